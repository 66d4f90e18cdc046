-- A hazard source's operating state may carry its planned end (计划结束时间): a maintenance or a
-- stop past it is flagged overdue on the console, so a state nobody set back is seen.
ALTER TABLE source_states ADD COLUMN planned_end timestamptz;
