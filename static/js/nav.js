// The sidebar: its page drop-down goes to the chosen page, and on a phone it folds into a menu.

const select = document.querySelector("select[data-nav]");
// Keys that change a closed drop-down's choice at once: with them the visitor is still looking,
// so the page changes on Enter, not on the first arrow key (WCAG 3.2.2, on input).
const BROWSING_KEYS = new Set(["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);

function go() {
  if (select.value && select.value !== window.location.pathname) window.location.assign(select.value);
}

if (select) {
  let browsing = false;
  select.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      go();
    } else if (BROWSING_KEYS.has(event.key) || (event.key.length === 1 && event.key !== " ")) {
      browsing = true; // typing a letter jumps to a page name, too
    }
  });
  select.addEventListener("change", () => {
    // A change from a key press waits for Enter; one from the mouse or the opened list goes now.
    if (browsing) {
      browsing = false;
      return;
    }
    go();
  });
  select.addEventListener("blur", () => {
    browsing = false;
  });
}

const toggle = document.getElementById("menu-toggle");
const menu = document.getElementById("site-menu");
if (toggle && menu) {
  // Without this script the menu simply stays open; with it, a phone shows it on request.
  document.documentElement.classList.add("has-menu-toggle");
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    menu.classList.toggle("is-open", open);
  });
}
