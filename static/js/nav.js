// The sidebar's page drop-down: choosing a page goes to its URL.
const select = document.querySelector("select[data-nav]");
if (select) {
  select.addEventListener("change", () => {
    if (select.value && select.value !== window.location.pathname) {
      window.location.assign(select.value);
    }
  });
}
