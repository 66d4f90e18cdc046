"""anjian (安监): the composition root — command line, settings and the supervisor."""
