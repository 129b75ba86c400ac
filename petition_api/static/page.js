/* countersign pages: what JavaScript adds to pages that work without it.
   - forms marked data-enhance are sent in the background; the answer (an HTML page,
     in the reader's language) replaces the page's <main>, without a reload;
   - the count follows the live stream (Server-Sent Events; polling /counts where that
     fails); "copy the link" buttons copy. No dependencies, nothing from elsewhere. */
(function () {
  "use strict";

  function group(n, sep) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, sep);
  }

  // -- the count ------------------------------------------------------------------------
  var stop = function () {};  // ends the previous page content's stream or polling

  function live(box) {
    stop();
    var url = box.getAttribute("data-live"), sep = box.getAttribute("data-group") || ",";
    var progress = box.querySelector("progress");
    var below = box.querySelector("#count-progress"), reached = box.querySelector("#count-reached");
    var list = document.querySelector(".top ol");
    var names = window.Intl && Intl.DisplayNames
      ? new Intl.DisplayNames([document.documentElement.lang], { type: "region" }) : null;

    function show(c) {
      box.hidden = false;
      box.querySelectorAll("[data-total]").forEach(function (el) {
        el.setAttribute("data-total", String(c.total));
        el.textContent = group(c.total, sep);
      });
      var done = c.total >= c.goal;
      progress.max = c.goal;
      progress.value = Math.min(c.total, c.goal);
      below.hidden = done;
      reached.hidden = !done;
      progress.setAttribute("aria-labelledby", done ? "count-reached" : "count-progress");
      if (list) countries(c.countries.slice(0, 5));
    }

    // Names already on the page stay as the server wrote them; new ones come from the
    // browser's own list.
    function countries(top) {
      var known = {};
      list.querySelectorAll("li").forEach(function (li) {
        known[li.getAttribute("data-code")] = li.firstElementChild.textContent;
      });
      list.textContent = "";
      top.forEach(function (x) {
        var name = known[x.code] || (x.code === "other" ? list.getAttribute("data-other")
          : (names && names.of(x.code)) || x.code);
        var li = document.createElement("li"), label = document.createElement("span");
        var count = document.createElement("span");
        li.setAttribute("data-code", x.code);
        label.textContent = name;
        count.setAttribute("data-count", "");
        count.textContent = group(x.count, sep);
        li.appendChild(label);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(count);
        list.appendChild(li);
      });
    }

    var timer = 0, stream = null, counts = url.replace(/\/live$/, "/counts");
    stop = function () { clearInterval(timer); if (stream) stream.close(); };
    function poll() {
      if (timer) return;
      var once = function () {
        fetch(counts, { credentials: "omit" }).then(function (r) { return r.ok ? r.json() : null; })
          .then(function (c) { if (c) show(c); }, function () {});
      };
      timer = setInterval(once, 15000);
      once();
    }
    if (!window.EventSource) return poll();
    var fails = 0;
    stream = new EventSource(url);
    stream.onmessage = function (e) { fails = 0; show(JSON.parse(e.data)); };
    stream.onerror = function () {
      if (stream.readyState === 2 || ++fails >= 3) { stream.close(); poll(); }
    };
  }

  // -- copying the link -----------------------------------------------------------------
  function copying(root) {
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      var input = document.getElementById(button.getAttribute("data-copy"));
      var status = root.querySelector("[data-copy-status]");
      button.hidden = false;
      button.addEventListener("click", function () {
        var copied = function () { if (status) status.textContent = button.getAttribute("data-copied"); };
        input.select();
        if (navigator.clipboard) navigator.clipboard.writeText(input.value).then(copied, function () {});
        else if (document.execCommand("copy")) copied();
      });
    });
  }

  // -- forms sent in the background -----------------------------------------------------
  function forms(root) {
    root.querySelectorAll("form[data-enhance]").forEach(function (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        if (form.getAttribute("aria-busy") === "true") return;
        var button = form.querySelector("button[type=submit]");
        var status = form.querySelector("[data-form-status]");
        var label = button.textContent;
        form.setAttribute("aria-busy", "true");
        button.setAttribute("aria-disabled", "true");
        if (form.getAttribute("data-sending")) button.textContent = form.getAttribute("data-sending");
        fetch(form.action, {
          method: "POST", credentials: "same-origin", headers: { Accept: "text/html" },
          body: new URLSearchParams(new FormData(form))
        }).then(function (r) { return r.text(); }).then(replace, function () {
          form.removeAttribute("aria-busy");
          button.removeAttribute("aria-disabled");
          button.textContent = label;
          if (status) status.textContent = form.getAttribute("data-network") || "";
        });
      });
    });
  }

  // The answer is a whole page: its <main> takes the place of ours, and the focus goes
  // where a reader of the new content starts (the errors, or the new heading).
  function replace(html) {
    var next = new DOMParser().parseFromString(html, "text/html");
    var main = next.querySelector("main"), current = document.querySelector("main");
    if (!main || !current) return;
    stop();
    document.title = next.title;
    current.replaceWith(document.adoptNode(main));
    start(main);
    var focus = main.querySelector("#error-summary") || main.querySelector("[role=alert]") ||
      main.querySelector("h1");
    if (focus) {
      if (!focus.hasAttribute("tabindex")) focus.setAttribute("tabindex", "-1");
      focus.focus();
    }
  }

  function start(root) {
    forms(root);
    copying(root);
    var box = root.querySelector(".progress[data-live]");
    if (box) live(box);
  }

  start(document);
})();
