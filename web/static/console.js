// Shoal console: the little behaviour plain HTML forms lack. Loaded as a file (the CSP allows
// no inline script).
// - Forms marked data-confirm ask first (deletes, revocations, rotations, disabling admins).
// - A form is sent once: a double click cannot, say, rotate a key twice and hide the secret
//   the first rotation produced.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.hasAttribute("hx-post")) return;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (form.method.toLowerCase() === "post") {
    if (form.dataset.sent === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "1";
  }
});
// A page restored from the back/forward cache may be submitted again.
window.addEventListener("pageshow", () => {
  document.querySelectorAll("form[data-sent]").forEach((f) => delete f.dataset.sent);
});
