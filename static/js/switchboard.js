// Small behaviours that need a script; everything else is server-rendered (and htmx).
// No inline scripts anywhere: the Content-Security-Policy allows only files from /static/.

// The phone-sized menu: one button opens and closes the navigation.
document.addEventListener("click", (event) => {
  const toggle = event.target.closest(".menu-toggle");
  if (!toggle) return;
  const bar = document.getElementById("topbar");
  const open = bar.classList.toggle("open");
  toggle.setAttribute("aria-expanded", String(open));
});

// Filters are folded on phones unless some are set; on wider screens they are open.
document.addEventListener("DOMContentLoaded", () => {
  for (const fold of document.querySelectorAll("details.filters-fold")) {
    if (window.matchMedia("(min-width: 721px)").matches) fold.open = true;
  }
});

// The simulated customer's chat starts at its newest message and follows new ones.
function scrollChatToEnd() {
  for (const chat of document.querySelectorAll(".transcript.wa")) chat.scrollTop = chat.scrollHeight;
}
document.addEventListener("DOMContentLoaded", scrollChatToEnd);
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.target.id === "wa-chat") scrollChatToEnd();
});

// The simulator's compose box empties as soon as a message is on its way, so the next one can be typed at
// once; letters typed meanwhile are kept, and a message that could not be sent comes back to the box.
document.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.detail.elt;
  if (!form.matches || !form.matches("form.wa-compose")) return;
  form.dataset.sending = form.elements.text.value;
  form.elements.text.value = "";
  form.elements.text.focus();
});
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (!form.matches || !form.matches("form.wa-compose")) return;
  if (!event.detail.successful && !form.elements.text.value) form.elements.text.value = form.dataset.sending;
  delete form.dataset.sending;
});

// A page that shows a token or secret once is the answer to the POST that made it: reloading it would post
// again (a second integration, or another rotation that voids the token just copied). Its history entry is
// replaced by the integration's own page, so a reload or a return lands there.
const shownOnce = document.querySelector("[data-shown-once]");
if (shownOnce) history.replaceState(null, "", shownOnce.dataset.shownOnce);

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText("value" in source ? source.value : source.textContent).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

function drawCharts() {
  const data = document.getElementById("chart-data");
  if (!data || typeof Chart === "undefined") return;
  const charts = JSON.parse(data.textContent);
  const stacked = { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } };
  const series = (s) => [
    { label: "Succeeded", data: s.succeeded, backgroundColor: "#0f766e" },
    { label: "Failed", data: s.failed, backgroundColor: "#b42318" },
  ];
  for (const name of ["hourly", "daily"]) {
    const canvas = document.getElementById(`chart-${name}`);
    if (canvas) new Chart(canvas, { type: "bar", data: { labels: charts[name].labels, datasets: series(charts[name]) },
                                    options: { responsive: true, animation: false, scales: stacked } });
  }
  const errors = document.getElementById("chart-errors");
  if (errors && charts.errors.labels.length) {
    new Chart(errors, { type: "doughnut", data: { labels: charts.errors.labels,
      datasets: [{ data: charts.errors.counts,
                   backgroundColor: ["#b42318", "#f79009", "#7a5af8", "#2e90fa", "#667085", "#12b76a", "#ee46bc", "#444ce7", "#15b79e", "#fd853a"] }] },
      options: { responsive: true, animation: false } });
  }
}
document.addEventListener("DOMContentLoaded", drawCharts);

// A new connection's preset fills its kind, base URL, model and "free" (connectors/providers/presets.py),
// and shows what that provider needs besides. The fields stay editable.
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-presets]");
  if (!select) return;
  const preset = JSON.parse(select.dataset.presets)[select.value];
  if (!preset) return;
  const form = select.form;
  form.elements.provider.value = preset.provider;
  form.elements.base_url.value = preset.base_url;
  form.elements.model.value = preset.model;
  form.elements.free.checked = preset.free;
  let note = document.getElementById("preset-note");
  if (!note) {
    note = document.createElement("p");
    note.id = "preset-note";
    note.className = "meta";
    note.setAttribute("aria-live", "polite");
    select.closest(".field").append(note);
  }
  note.textContent = preset.note;
});

// A form that replaces a live secret asks first (data-confirm holds the question).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// In the test console, Ctrl+Enter (or Cmd+Enter) in the customer message sends, as chat tools do.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  const form = event.target.closest && event.target.closest("#send-form");
  if (form) { event.preventDefault(); form.requestSubmit(); }
});
