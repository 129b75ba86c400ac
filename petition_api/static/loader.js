/* countersign widget loader: cached for minutes, it loads the widget's current version,
   whose URL never changes content and is cached for a year. */
(function () {
  var me = document.currentScript;
  if (!me) return;
  var s = document.createElement("script");
  s.src = new URL("widget/$version.js", me.src).href;
  s.async = true;
  if (me.nonce) s.nonce = me.nonce;
  document.head.appendChild(s);
})();
