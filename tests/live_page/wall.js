// Test page for js/pages/cameras.js: the page module mounted as the console's router would.
import page from "/static/js/pages/cameras.js";
import { setLang } from "/static/js/i18n.js";

const params = Object.fromEntries(new URLSearchParams(location.search));
const unmount = page.mount(document.getElementById("page"), { me: null, params, navigate() {} });
window.cameraTest = { unmount, setLang };
