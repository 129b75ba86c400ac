/* countersign widget, in a Shadow DOM per <div data-countersign-petition="slug">.
   Options: data-source, data-lang, data-share-url, data-poll (seconds).
   Texts: window.CountersignTexts = {fr: {submit: "Je signe"}}. No dependencies.
   Countries below the deployment's threshold come folded as "other" (t.other). */
(function () {
  "use strict";
  if (window.Countersign) { window.Countersign.scan(); return; }
  var me = document.currentScript;
  var API = me ? me.src.replace(/\/widget\/[^/]*$/, "") : "";
  var COUNTRIES = ("ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBY" +
    "BZCACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFIFJFKFMFOFRGAGBGDGE" +
    "GFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKR" +
    "KWKYKZLALBLCLILKLRLSLTLULVLYMAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNI" +
    "NLNONPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSS" +
    "STSVSXSYSZTCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSYEYTZAZMZW"
  ).match(/../g);
  var SOURCE = /^[a-z0-9_-]{1,64}$/;
  var RTL = /^(ar|fa|he|ur|ps|yi)$/;
  var TEXTS = {
    en: {
      to: "To:", count: "{n} of {goal} signatures",
      reached: "Goal reached: {n} signatures!",
      top: "Top countries", name: "Full name", email: "Email", country: "Country",
      choose: "Choose your country", postal: "Postal code (optional)",
      consent: "Keep me updated about this campaign by email", submit: "Sign the petition",
      sending: "Sending…",
      required: "This field is required.", e_name: "Enter your name, without web addresses.",
      e_email: "Enter a valid email address.",
      e_other: "Check this field.",
      fix: "Please correct the highlighted fields.",
      closed: "This petition is closed.",
      rate: "Too many attempts: please wait a minute and retry.",
      network: "No connection to the petition. Check your network and retry.",
      failed: "Something went wrong on our side. Please retry shortly.",
      missing: "This petition could not be loaded.", thanks: "Thank you for signing!",
      inbox: "Check your inbox: confirm your signature with the link we sent.",
      share: "Now share the petition: every signature counts.", link: "Link to share",
      copy: "Copy link", copied: "Link copied.", pitch: "I signed: {title}",
      other: "Other countries", privacy: "Your data is held by {controller}.", policy: "Privacy policy"
    },
    fr: {
      to: "À :", count: "{n} signatures sur {goal}",
      reached: "Objectif atteint : {n} signatures !",
      top: "Principaux pays", name: "Nom complet", email: "E-mail", country: "Pays",
      choose: "Choisissez votre pays", postal: "Code postal (facultatif)",
      consent: "Tenez-moi informé·e de cette campagne par e-mail", submit: "Signer la pétition",
      sending: "Envoi…",
      required: "Ce champ est obligatoire.", e_name: "Indiquez votre nom, sans adresse web.",
      e_email: "Indiquez une adresse e-mail valide.",
      e_other: "Vérifiez ce champ.",
      fix: "Corrigez les champs signalés.",
      closed: "Cette pétition est close.",
      rate: "Trop de tentatives : réessayez dans une minute.",
      network: "Pétition injoignable. Vérifiez votre connexion et réessayez.",
      failed: "Erreur de notre côté. Réessayez dans un instant.",
      missing: "Cette pétition n’a pas pu être chargée.", thanks: "Merci d’avoir signé !",
      inbox: "Vérifiez vos e-mails : confirmez votre signature par le lien envoyé.",
      share: "Partagez la pétition : chaque signature compte.", link: "Lien à partager",
      copy: "Copier le lien", copied: "Lien copié.", pitch: "J’ai signé : {title}",
      other: "Autres pays", privacy: "Vos données sont conservées par {controller}.",
      policy: "Politique de confidentialité"
    },
    ru: {
      to: "Кому:", count: "Подписали: {n} из {goal}",
      reached: "Цель достигнута: {n} подписей!",
      top: "Больше всего подписей", name: "Имя и фамилия", email: "Эл. почта",
      country: "Страна", choose: "Выберите страну", postal: "Почтовый индекс (необязательно)",
      consent: "Сообщайте мне новости этой кампании по почте", submit: "Подписать петицию",
      sending: "Отправка…",
      required: "Это поле обязательно.", e_name: "Укажите имя без веб-адресов.",
      e_email: "Укажите правильный адрес почты.",
      e_other: "Проверьте это поле.",
      fix: "Исправьте отмеченные поля.",
      closed: "Петиция закрыта.",
      rate: "Слишком много попыток: повторите через минуту.",
      network: "Нет связи с сервером. Проверьте подключение и повторите.",
      failed: "Ошибка на нашей стороне. Повторите чуть позже.",
      missing: "Не удалось загрузить петицию.", thanks: "Спасибо за подпись!",
      inbox: "Проверьте почту и подтвердите подпись по ссылке из письма.",
      share: "Поделитесь петицией: важна каждая подпись.", link: "Ссылка",
      copy: "Скопировать ссылку", copied: "Ссылка скопирована.", pitch: "Я подписал(а): {title}",
      other: "Другие страны", privacy: "Ваши данные хранит {controller}.",
      policy: "Политика конфиденциальности"
    },
    ar: {
      to: "إلى:", count: "التوقيعات: {n} من {goal}",
      reached: "تحقّق الهدف: {n} توقيع!",
      top: "أكثر الدول توقيعًا", name: "الاسم الكامل", email: "البريد الإلكتروني",
      country: "الدولة", choose: "اختر دولتك", postal: "الرمز البريدي (اختياري)",
      consent: "أبقوني على اطلاع بهذه الحملة عبر البريد", submit: "وقّع العريضة",
      sending: "جارٍ الإرسال…",
      required: "هذا الحقل مطلوب.", e_name: "اكتب اسمك من دون عناوين ويب.",
      e_email: "اكتب بريدًا إلكترونيًا صحيحًا.",
      e_other: "تحقق من هذا الحقل.",
      fix: "يرجى تصحيح الحقول المشار إليها.",
      closed: "هذه العريضة مغلقة.",
      rate: "محاولات كثيرة: أعد المحاولة بعد دقيقة.",
      network: "تعذّر الاتصال. تحقق من شبكتك وأعد المحاولة.",
      failed: "خطأ من جهتنا. أعد المحاولة بعد قليل.",
      missing: "تعذّر تحميل العريضة.", thanks: "شكرًا لتوقيعك!",
      inbox: "تحقّق من بريدك وأكّد توقيعك عبر الرابط المرسل.",
      share: "شارك العريضة: كل توقيع مهم.", link: "رابط للمشاركة",
      copy: "انسخ الرابط", copied: "تم نسخ الرابط.", pitch: "وقّعت: {title}",
      other: "دول أخرى", privacy: "يحتفظ {controller} ببياناتك.", policy: "سياسة الخصوصية"
    }
  };
  var CSS = ":host{all:initial;display:block}.cs{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;border:1px solid #c4c8cc;border-radius:8px;padding:16px;max-width:36em}" +
    ".cs *{box-sizing:border-box}h2{font-size:1.3em;margin:0 0 .3em}h3{font-size:1em;margin:1em 0 .3em}p{margin:0 0 .6em}.text{white-space:pre-line}.total{font-size:1.5em}" +
    ".bar{height:10px;background:#e1e4e7;border-radius:5px;overflow:hidden;margin:.3em 0 .8em}.fill{height:100%;width:0;background:#0b5cad}ul{margin:0;padding:0;list-style:none}" +
    ".top li{display:flex;justify-content:space-between;max-width:20em}label{display:block;font-weight:600;margin:.8em 0 .2em}" +
    "input,select{width:100%;font:inherit;color:inherit;padding:.45em;background:#fff;border:1px solid #6b7075;border-radius:4px}label.check{display:flex;gap:.5em;font-weight:400}" +
    ".check input{width:auto;margin:.3em 0 0}[aria-invalid=true]{border:2px solid #b00020}.err{color:#b00020;margin:.2em 0 0}" +
    ".hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}" +
    "button,.share a{display:inline-block;font:inherit;font-weight:600;margin:.8em 0 0;padding:.55em 1.1em;border:0;border-radius:4px;background:#0b5cad;color:#fff;cursor:pointer;text-decoration:none}" +
    "[aria-disabled=true]{opacity:.75}:focus-visible{outline:3px solid #0b5cad;outline-offset:2px}.privacy{font-size:.9em}.msg{font-weight:600;margin:.8em 0 0}.share{display:flex;flex-wrap:wrap;gap:.5em}" +
    "[hidden]{display:none!important}";

  function h(tag, attrs, kids) {
    var el = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") el.textContent = attrs[k];
      else if (attrs[k] !== false && attrs[k] != null) el.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (kid) { if (kid) el.appendChild(kid); });
    return el;
  }

  function texts(lang) {
    var own = window.CountersignTexts || {};
    var base = lang.toLowerCase().split("-")[0];
    var known = TEXTS[base] || own[base] ? base : "en";
    var t = {};
    [TEXTS.en, own.en, TEXTS[known], own[known]].forEach(function (layer) {
      for (var k in layer || {}) t[k] = layer[k];
    });
    return { t: t, locale: known === base ? lang : "en", lang: known };
  }

  function regionOf(tag) {
    try { return new Intl.Locale(tag).maximize().region || ""; } catch (e) { return ""; }
  }

  function sourceFor(el) {
    var s = el.getAttribute("data-source");
    if (s == null) s = new URLSearchParams(location.search).get("source") || "";
    s = s.trim().toLowerCase();
    return SOURCE.test(s) ? s : null;
  }

  function mount(host) {
    var slug = host.getAttribute("data-countersign-petition");
    var tx = texts(host.getAttribute("data-lang") || navigator.language || "en");
    var t = tx.t, locale = tx.locale;
    var num = new Intl.NumberFormat(locale);
    var regions = window.Intl && Intl.DisplayNames ? new Intl.DisplayNames([locale], { type: "region" }) : null;
    var nameOf = function (code) {
      try { return (regions && regions.of(code)) || code; } catch (e) { return code; }
    };
    var base = API + "/v1/petitions/" + encodeURIComponent(slug);
    var root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      // Not inline style: a strict CSP on the page allows it.
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.appendChild(h("style", { text: CSS }));
    }
    var box = h("section", { "class": "cs", lang: tx.lang, dir: RTL.test(tx.lang) ? "rtl" : "ltr" });
    var msg = h("div", { "class": "msg", role: "alert" });
    box.appendChild(h("p", { text: "…" }));
    box.appendChild(msg);
    root.appendChild(box);
    var say = function (text) { msg.textContent = text; };

    var asked = host.getAttribute("data-lang");
    fetch(base + (asked ? "?lang=" + encodeURIComponent(asked) : ""), { credentials: "omit" })
      .then(function (r) { if (!r.ok) throw r; return r.json(); })
      .then(function (p) { render(p); }, function () { box.firstChild.textContent = t.missing; });

    function render(p) {
      var count = h("p", { "class": "count", id: "cs-count" });
      // Past the goal: never "16 of 10".
      var write = function (n, goal) {
        count.textContent = "";
        (n >= goal ? t.reached : t.count).split(/(\{n\}|\{goal\})/).forEach(function (part) {
          count.appendChild(part === "{n}" ? h("strong", { "class": "total", "data-total": String(n), text: num.format(n) })
            : document.createTextNode(part === "{goal}" ? num.format(goal) : part));
        });
      };
      var fill = h("div", { "class": "fill" });
      var bar = h("div", { "class": "bar", role: "progressbar", "aria-labelledby": "cs-count",
        "aria-valuemin": "0", "aria-valuemax": String(p.goal), "aria-valuenow": "0" }, [fill]);
      var top = h("ul");
      var topBox = h("div", { "class": "top", hidden: "" }, [h("h3", { text: t.top }), top]);
      var o = p.lang !== tx.lang, mark = function (a) { a.lang = o && p.lang; a.dir = o && "auto"; return a; };
      box.replaceChild(h("div", {}, [
        h("h2", mark({ text: p.title })),
        p.target ? h("p", { "class": "target" }, [document.createTextNode(t.to + " "), h("span", mark({ text: p.target }))]) : null,
        h("p", mark({ "class": "text", text: p.text })),
        count, bar, topBox
      ]), box.firstChild);

      var show = function (c) {
        write(c.total, c.goal);
        bar.setAttribute("aria-valuemax", String(c.goal));
        bar.setAttribute("aria-valuenow", String(Math.min(c.total, c.goal)));
        fill.style.width = (c.total ? Math.max(1, Math.min(100, (100 * c.total) / c.goal)) : 0) + "%";
        top.textContent = "";
        c.countries.slice(0, 5).forEach(function (x) {
          var name = x.code === "other" ? t.other : nameOf(x.code);
          top.appendChild(h("li", {}, [h("span", { text: name }), h("span", { text: num.format(x.count) })]));
        });
        topBox.hidden = !c.countries.length;
      };
      live(base, show, Math.max(1, Number(host.getAttribute("data-poll")) || 15) * 1000);
      if (p.status !== "open") return say(t.closed);
      form(p);
    }

    function form(p) {
      var fields = {}, errs = {};
      function field(name, label, input, check) {
        input.id = "cs-" + name;
        input.name = name;
        errs[name] = h("p", { "class": "err", id: "cs-" + name + "-err", hidden: "" });
        fields[name] = input;
        var lab = h("label", { "for": input.id, "class": check ? "check" : null, text: check ? null : label });
        if (check) { lab.appendChild(input); lab.appendChild(document.createTextNode(label)); }
        return h("div", {}, check ? [lab, errs[name]] : [lab, input, errs[name]]);
      }
      var country = h("select", { required: "", autocomplete: "country" }, [h("option", { value: "", text: t.choose })]);
      COUNTRIES.map(function (c) { return [nameOf(c), c]; })
        .sort(function (a, b) { return a[0].localeCompare(b[0], locale); })
        .forEach(function (c) { country.appendChild(h("option", { value: c[1], text: c[0] })); });
      country.value = regionOf(navigator.language || "");
      if (!country.value) country.value = "";
      var submit = h("button", { type: "submit", text: t.submit });
      var consent = h("input", { type: "checkbox" });
      var hp = h("input", { type: "text", tabindex: "-1", autocomplete: "off", id: "cs-website", name: "website" });
      var f = h("form", { novalidate: "" }, [
        field("name", t.name, h("input", { type: "text", required: "", autocomplete: "name", maxlength: "120" })),
        field("email", t.email, h("input", { type: "email", required: "", autocomplete: "email", maxlength: "254" })),
        field("country", t.country, country),
        field("postal_code", t.postal, h("input", { type: "text", autocomplete: "postal-code", maxlength: "16" })),
        field("consent_updates", t.consent, consent, true),
        notice(p.privacy || {}),
        h("div", { "class": "hp", "aria-hidden": "true" }, [h("label", { "for": "cs-website", text: "Website" }), hp]),
        submit
      ]);
      box.insertBefore(f, msg);
      var busy = false;

      // Who holds the data, and its privacy policy: beside the consent box.
      function notice(v) {
        var url = /^https?:\/\//.test(v.policy_url) && v.policy_url;
        return (v.data_controller || url) && h("p", { "class": "privacy" }, [
          v.data_controller && document.createTextNode(t.privacy.replace("{controller}", v.data_controller) + " "),
          url && h("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: t.policy })
        ]);
      }

      function clear() {
        say("");
        for (var k in errs) {
          errs[k].hidden = true;
          fields[k].removeAttribute("aria-invalid");
          fields[k].removeAttribute("aria-describedby");
        }
      }
      function invalid(errors) {
        var first = null, other = false;
        for (var k in errors) {
          if (!errs[k]) { other = true; continue; }
          var value = fields[k].type === "checkbox" ? "x" : fields[k].value.trim();
          errs[k].textContent = value ? t["e_" + k] || t.e_other : t.required;
          errs[k].hidden = false;
          fields[k].setAttribute("aria-invalid", "true");
          fields[k].setAttribute("aria-describedby", errs[k].id);
          first = first || fields[k];
        }
        say(first ? t.fix : t.failed);
        if (first) first.focus();
        return other;
      }
      var done = {
        counted: function () { thanks(p, t.share); },
        pending_confirmation: function () { thanks(p, t.inbox + " " + t.share); }
      };

      f.addEventListener("submit", function (e) {
        e.preventDefault();
        if (busy) return;
        clear();
        var body = {
          name: fields.name.value, email: fields.email.value, country: country.value,
          consent_updates: consent.checked, website: hp.value
        };
        if (fields.postal_code.value.trim()) body.postal_code = fields.postal_code.value;
        var source = sourceFor(host);
        if (source) body.source = source;
        busy = true;
        submit.setAttribute("aria-disabled", "true");
        submit.textContent = t.sending;
        fetch(base + "/signatures", {
          method: "POST", credentials: "omit",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
        }).then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (b) {
            if (r.ok) return (done[b.status] || done.counted)(b);
            if (r.status === 422) return invalid((b.error && b.error.fields) || {});
            say(r.status === 409 ? t.closed : r.status === 429 ? t.rate : t.failed);
          });
        }, function () { say(t.network); }).then(function () {
          busy = false;
          submit.removeAttribute("aria-disabled");
          submit.textContent = t.submit;
        });
      });

      function thanks(p, lead) {
        var url = host.getAttribute("data-share-url") || location.href.split("#")[0];
        var pitch = t.pitch.replace("{title}", p.title), e = encodeURIComponent;
        var link = h("input", { type: "text", readonly: "", id: "cs-link", value: url });
        var copy = h("button", { type: "button", text: t.copy });
        copy.addEventListener("click", function () {
          var copied = function () { say(t.copied); };
          link.select();
          if (navigator.clipboard) navigator.clipboard.writeText(url).then(copied, function () {});
          else if (document.execCommand("copy")) copied();
        });
        var nets = [
          ["X", "https://twitter.com/intent/tweet?text=" + e(pitch) + "&url=" + e(url)],
          ["Facebook", "https://www.facebook.com/sharer/sharer.php?u=" + e(url)],
          ["WhatsApp", "https://wa.me/?text=" + e(pitch + " " + url)],
          ["Telegram", "https://t.me/share/url?url=" + e(url) + "&text=" + e(pitch)],
          ["Email", "mailto:?subject=" + e(p.title) + "&body=" + e(pitch + "\n" + url)]
        ];
        var heading = h("h3", { tabindex: "-1", text: t.thanks });
        box.replaceChild(h("div", { "class": "thanks" }, [
          heading, h("p", { text: lead }),
          h("label", { "for": "cs-link", text: t.link }), link, copy,
          h("ul", { "class": "share" }, nets.map(function (n) {
            return h("li", {}, [h("a", { href: n[1], target: "_blank", rel: "noopener noreferrer", text: n[0] })]);
          }))
        ]), f);
        say("");
        heading.focus();
      }
    }
  }

  // Counts over Server-Sent Events; else polling /counts (and the stream again each minute).
  function live(base, show, every) {
    var timer = 0;
    function fetchCounts() {
      fetch(base + "/counts", { credentials: "omit" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (c) { if (c) show(c); }, function () {});
    }
    function poll() { if (!timer) { timer = setInterval(fetchCounts, every); fetchCounts(); } }
    function stream() {
      if (!window.EventSource) return poll();
      var es = new EventSource(base + "/live"), got = false, fails = 0;
      es.onmessage = function (e) {
        got = true;
        fails = 0;
        if (timer) { clearInterval(timer); timer = 0; }
        show(JSON.parse(e.data));
      };
      es.onerror = function () {
        if (es.readyState === 2 || !got || ++fails >= 3) {
          es.close();
          poll();
          setTimeout(stream, 60000);
        }
      };
    }
    stream();
  }

  function scan() {
    var els = document.querySelectorAll("[data-countersign-petition]");
    for (var i = 0; i < els.length; i++) if (!els[i].shadowRoot) mount(els[i]);
  }

  window.Countersign = { scan: scan };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  scan();
})();
