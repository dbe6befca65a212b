// The layer atlas: one page drawn from data/overview.js and one data/nNNNNN.js per neuron, loaded on demand
// by adding a <script> (a page opened from file:// may load scripts from its folder, not fetch files).
// Views by the address's hash: "" the neurons, #n/POS a neuron (POS: its row in the scan), #c/POS/J a concept,
// #layer the layer's histogram and map, #shared the shared concepts. Every text from the data is set with
// textContent, never as HTML.
(function () {
  "use strict";
  var A = window.ATLAS = window.ATLAS || {};
  var O = null, main = null, neurons = {}, waiting = {}, offsets = [];
  var ROW = 52, state = { key: "neuron", dir: 1, order: null, sel: 0, query: "", label: "", kmin: "", kmax: "", live: false };
  A.timings = {};

  function el(tag, attrs, kids) {
    var e = document.createElement(tag), k;
    for (k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else if (k === "style") e.style.cssText = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function link(href, text) { return el("a", { href: href, text: text }); }
  function fmt(v, d) { return v == null ? "–" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(d == null ? 3 : d) : String(v); }
  function colour(j) { var c = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]; return j < 0 ? "#999" : c[j % c.length]; }

  // -- examples: a sprite tile, a shaded snippet, or a caption (report/atlas/thumbs.py) --
  function tile(ref, title) {
    var T = O.thumbs;
    if (typeof ref === "string") return el("span", { cls: "caption", text: ref, title: title || "" });
    if (T.kind === "image") {
      var s = T.side;
      return el("span", { cls: "tile", title: title || "", style: "width:" + s + "px;height:" + s + "px;background-image:url(" +
        T.folder + "/" + T.sheets[ref[0]] + ");background-position:-" + ref[1] * s + "px -" + ref[2] * s + "px" });
    }
    if (T.kind === "text") {
      var box = el("span", { cls: "snippet", title: title || "" });
      ref[0].forEach(function (p, k) {
        var piece = el("span", { text: p[0] });
        if (p[1] >= 0) piece.style.background = "rgba(255,140,0," + p[1] + ")";
        box.appendChild(k === ref[1] ? el("mark", {}, [piece]) : piece);
      });
      return box;
    }
    return el("span", { cls: "caption", text: String(ref), title: title || "" });
  }

  // -- loading a neuron's file --
  A.neuron = function (pos, data) {
    neurons[pos] = data;
    (waiting[pos] || []).forEach(function (f) { f(data); });
    delete waiting[pos];
  };
  function load(pos, then) {
    if (neurons[pos]) return then(neurons[pos]);
    if (waiting[pos]) return waiting[pos].push(then);
    waiting[pos] = [then];
    var name = "data/n" + String(pos).padStart(5, "0") + ".js";
    var s = el("script", { src: name });
    s.onerror = function () { main.replaceChildren(el("p", { cls: "warn", text: "Could not load " + name + ": the atlas folder is incomplete; write it again." })); };
    document.body.appendChild(s);
  }

  // -- the neurons: a table that draws only the rows in view, so 10,000 rows sort and filter at once --
  var COLS = [["neuron", "neuron", "84px"], ["concepts", "concepts", "98px"], ["evidence", "evidence", "250px"], ["C", "C", "50px"], ["split_p", "split p", "84px"], ["live", "live", "54px"],
    ["agreement", "stability", "90px"], ["shared", "shared", "76px"], ["causal", "causal", "80px"], ["atom_cos", "atom cos", "84px"], ["outliers", "outliers", "84px"], ["labels", "commonest label per concept", "1fr"],
    ["strip", "top examples", "auto"]];
  function rowsMatching() {
    var R = O.rows, n = R.neuron.length, out = [], q = state.query.trim().toLowerCase(), lab = state.label.trim().toLowerCase();
    var qn = /^\d+$/.test(q) ? +q : null, lo = state.kmin === "" ? -1 : +state.kmin, hi = state.kmax === "" ? 1e9 : +state.kmax;
    for (var i = 0; i < n; i++) {
      if (state.live && !R.live[i]) continue;
      if (R.concepts[i] < lo || R.concepts[i] > hi) continue;
      if (lab && R.labels[i].toLowerCase().indexOf(lab) < 0) continue;
      if (q && !(qn !== null && R.neuron[i] === qn) && R.labels[i].toLowerCase().indexOf(q) < 0) continue;
      out.push(i);
    }
    var col = R[state.key], d = state.dir;
    out.sort(function (a, b) {
      var x = col[a], y = col[b];
      if (x === y) return R.neuron[a] - R.neuron[b];
      if (x == null) return 1;
      if (y == null) return -1;
      return (x < y ? -1 : 1) * d;
    });
    return out;
  }
  function overview() {
    var t0 = performance.now();
    var search = el("input", { type: "search", id: "search", placeholder: "neuron number or label  ( / )", value: state.query });
    var label = el("input", { type: "text", id: "label-filter", placeholder: "label contains", value: state.label });
    var kmin = el("input", { type: "number", id: "kmin", min: "0", value: state.kmin }), kmax = el("input", { type: "number", id: "kmax", min: "0", value: state.kmax });
    var live = el("input", { type: "checkbox", id: "live-only" });
    live.checked = state.live;
    var count = el("span", { cls: "count", id: "count" });
    var head = el("div", { cls: "thead" });
    // columns the scan measured: stability only with --stability, the split's p-value only with auto; causal and atom cos where those commands were run
    var cols = COLS.filter(function (c) { return (["agreement", "split_p", "causal", "atom_cos"].indexOf(c[0]) < 0) || (O.rows[c[0]] || []).some(function (v) { return v != null; }); })
      .filter(function (c) { return c[0] !== "shared" || O.shared; });
    var template = cols.map(function (c) { return c[0] === "strip" ? (O.thumbs.kind === "image" ? (8 * (O.thumbs.side + 4)) + "px" : "500px") : c[2]; }).join(" ");
    cols.forEach(function (c) {
      var h = el("div", { text: c[1], "data-col": c[0], title: c[0] === "strip" ? "" : "sort by " + c[1] });
      if (c[0] === state.key) h.dataset.dir = state.dir;
      if (c[0] !== "strip") h.addEventListener("click", function () { sortBy(c[0]); });
      head.appendChild(h);
    });
    var spacer = el("div", { cls: "spacer" }), view = el("div", { cls: "viewport", id: "rows", tabindex: "0" }, [spacer]);
    var table = el("div", { cls: "table", style: "--cols:" + template + ";--row:" + ROW + "px" }, [head, view]);
    main.replaceChildren(
      el("h1", { text: O.rows.neuron.length + (O.kind === "neurons" ? " neurons" : " directions") }),
      el("div", { cls: "controls" }, [search, label, el("label", {}, ["concepts ", kmin, " to ", kmax]), el("label", {}, [live, " live only"]), count]),
      el("p", { cls: "key" }, ["Click a column to sort (again to reverse); ", el("kbd", { text: "↑" }), el("kbd", { text: "↓" }), " choose a row, ",
        el("kbd", { text: "Enter" }), " opens it, ", el("kbd", { text: "/" }), " searches."]),
      table);
    var order = [];
    function draw() {
      var top = view.scrollTop, first = Math.max(0, Math.floor(top / ROW) - 4), last = Math.min(order.length, first + Math.ceil(view.clientHeight / ROW) + 10);
      var frag = document.createDocumentFragment(), R = O.rows;
      for (var k = first; k < last; k++) {
        var i = order[k], r = el("div", { cls: "row" + (k === state.sel ? " sel" : "") + (R.live[i] ? "" : " dead"), "data-neuron": R.neuron[i], style: "top:" + k * ROW + "px" });
        cols.forEach(function (c) {
          var v = R[c[0]][i], cell;
          if (c[0] === "strip") { cell = el("div", { cls: "strip" }); v.slice(0, O.thumbs.kind === "image" ? v.length : 3).forEach(function (ref) { cell.appendChild(tile(ref)); }); }
          else if (c[0] === "neuron") cell = el("div", {}, [link("#n/" + i, String(v))]);
          else if (c[0] === "evidence") cell = el("div", { cls: "evidence", text: v, title: v + ": the count in words that follow the checks (split p-value adjusted over the scan, stability, labels): a group is called a concept only where a check supports it" });
          else if (c[0] === "live") cell = el("div", { text: v ? "yes" : "no" });
          else if (c[0] === "causal") cell = el("div", { text: v == null ? "–" : v + " of " + R.causal_of[i], title: "concepts found selective by conceptvec causal, of those it removed" });
          else if (c[0] === "atom_cos") cell = el("div", { text: v == null ? "–" : v.toFixed(3), title: "lowest cosine of a concept with its matched dictionary atom (compare-dictionary)" });
          else if (c[0] === "split_p") cell = el("div", { text: v == null ? "–" : v < 0.001 ? v.toExponential(1) : v.toFixed(3), title: "p-value of the first split (auto's test)" });
          else cell = el("div", { text: fmt(v, 2), title: c[0] === "labels" ? v : "" });
          r.appendChild(cell);
        });
        r.addEventListener("click", (function (i) { return function (e) { if (e.target.tagName !== "A") location.hash = "#n/" + i; }; })(i));
        frag.appendChild(r);
      }
      spacer.replaceChildren(frag);
    }
    function refresh() {
      var t = performance.now();
      order = rowsMatching();
      state.order = order;
      state.sel = Math.min(state.sel, Math.max(0, order.length - 1));
      spacer.style.height = order.length * ROW + "px";
      count.textContent = order.length + " of " + O.rows.neuron.length + " shown";
      draw();
      A.timings.refresh = performance.now() - t;
      document.body.dataset.shown = String(order.length);
    }
    function sortBy(key) {
      state.dir = state.key === key ? -state.dir : (key === "neuron" || key === "labels" ? 1 : -1);
      state.key = key;
      Array.prototype.forEach.call(head.children, function (h) { if (h.dataset.col === key) h.dataset.dir = state.dir; else delete h.dataset.dir; });
      refresh();
    }
    function input(box, key) { box.addEventListener("input", function () { state[key] = box.value; state.sel = 0; view.scrollTop = 0; refresh(); }); }
    input(search, "query"); input(label, "label"); input(kmin, "kmin"); input(kmax, "kmax");
    live.addEventListener("change", function () { state.live = live.checked; refresh(); });
    view.addEventListener("scroll", function () { requestAnimationFrame(draw); });
    A.keys = function (e) {
      if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); return; }
      if (e.target && e.target.tagName === "INPUT" && e.key !== "ArrowDown" && e.key !== "ArrowUp" && e.key !== "Enter") return;
      if (e.key === "ArrowDown" || e.key === "j") state.sel = Math.min(order.length - 1, state.sel + 1);
      else if (e.key === "ArrowUp" || e.key === "k") state.sel = Math.max(0, state.sel - 1);
      else if (e.key === "Enter" && order.length) { location.hash = "#n/" + order[state.sel]; return; }
      else return;
      e.preventDefault();
      var y = state.sel * ROW;
      if (y < view.scrollTop) view.scrollTop = y;
      else if (y + ROW > view.scrollTop + view.clientHeight) view.scrollTop = y + ROW - view.clientHeight;
      draw();
    };
    refresh();
    A.timings.overview = performance.now() - t0;
    search.focus();
  }

  // -- a neuron --
  function neuronView(pos) {
    var t0 = performance.now(), R = O.rows;
    main.replaceChildren(el("p", { text: "Loading neuron " + R.neuron[pos] + "..." }));
    load(pos, function (N) {
      var what = O.kind === "neurons" ? "Neuron " : "Direction ";
      var nav = el("p", {}, [pos > 0 ? link("#n/" + (pos - 1), "← " + R.neuron[pos - 1]) : null, " ", link("#", "all"), " ",
        pos + 1 < R.neuron.length ? link("#n/" + (pos + 1), R.neuron[pos + 1] + " →") : null,
        N.report ? el("span", {}, ["  ·  ", link(N.report, "full report page (every figure)")]) : null]);
      var lead = el("p", { cls: "lead", text: N.top.length + " top activating examples, C = " + N.C + " clusters, " + N.concepts.length +
        " concept(s) (evidence: " + R.evidence[pos] + "); the tree was cut at " + fmt(N.threshold, 4) + (R.agreement[pos] != null ? "; stability: " + fmt(R.agreement[pos], 2) +
        " of the resampled runs found as many concepts" : "") + "." });
      var kids = [nav, el("h1", { text: what + N.neuron }), lead];
      if (!N.live) kids.push(el("p", { cls: "warn", text: "Not live: some top examples do not activate this unit (or all alike), so its clusters group arbitrary examples." }));
      kids.push(conceptTable(pos, N));
      if (N.causal) kids.push.apply(kids, causalTable(N));
      if (N.dictionary) kids.push.apply(kids, atomTable(N));
      kids.push(el("h2", { text: "Distance threshold and the ward tree" }),
        el("p", { cls: "key", text: "Move the slider to re-cut the tree of the top examples in the browser (step 2): merges at or above the threshold are not made. Each tile's badge is its concept in the saved scan (c0, c1, ...; 'removed': an outlier or a member of a too-small cluster)." }));
      var slider = cutView(N);
      kids.push(slider);
      main.replaceChildren.apply(main, kids);
      A.timings.neuron = performance.now() - t0;
      document.body.dataset.view = "neuron:" + N.neuron;
    });
  }
  function conceptTable(pos, N) {
    var t = el("table", { cls: "plain", id: "concepts" }), h = el("tr");
    var heads = ["concept", "members", "evidence", "commonest labels", "members' cosine", "stability", "shared group", "nearest in other neurons"];
    heads.forEach(function (x) { h.appendChild(el("th", { text: x })); });
    t.appendChild(h);
    N.concepts.forEach(function (c, j) {
      var r = el("tr");
      r.appendChild(el("td", {}, [link("#c/" + pos + "/" + j, "c" + j)]));
      r.appendChild(el("td", { text: String(c.size) }));
      r.appendChild(el("td", { text: c.evidence || "–", title: c.verdict || "" }));
      r.appendChild(el("td", { text: c.labels.map(function (l) { return l[0] + " (" + l[1] + ")"; }).join(", ") || "–" }));
      r.appendChild(el("td", { text: fmt(c.cos_concept, 3) }));
      r.appendChild(el("td", { text: fmt(c.reappearance, 2) }));
      r.appendChild(el("td", {}, [c.group >= 0 ? link("#shared/" + c.group, "group " + c.group) : "–"]));
      var near = el("td");
      c.near.slice(0, 3).forEach(function (m, k) {
        if (k) near.appendChild(document.createTextNode(", "));
        near.appendChild(link("#c/" + m[0] + "/" + m[1], O.rows.neuron[m[0]] + ":c" + m[1]));
        near.appendChild(document.createTextNode(" (" + fmt(m[2], 2) + ")"));
      });
      r.appendChild(near);
      t.appendChild(r);
    });
    return t;
  }
  function table(id, heads, rows) {
    var t = el("table", { cls: "plain", id: id });
    t.appendChild(el("tr", {}, heads.map(function (x) { return el("th", { text: x }); })));
    rows.forEach(function (r) { t.appendChild(el("tr", {}, r.map(function (x) { return typeof x === "object" && x ? el("td", {}, [x]) : el("td", { text: x == null ? "–" : String(x) }); }))); });
    return t;
  }
  function scanConcept(pos, j, cos) { return j < 0 ? "–" : el("span", {}, [link("#c/" + pos + "/" + j, "c" + j), cos == null ? "" : " (cos " + cos.toFixed(3) + ")"]); }
  // `conceptvec causal`: each concept of the ConceptSet RUN/neuron_N removed from the layer (report/atlas/beside.py)
  function causalTable(N) {
    var C = N.causal;
    return [el("h2", { text: "Causal effect (conceptvec causal)" }),
      el("p", { cls: "key", text: "Drop of the target logit when each direction is removed (" + C.mode + ", " + C.directions + "), on each group's examples. Selective: its own members drop more than any other concept's members, than random examples, and more than any random direction makes them drop. Concepts are those of the ConceptSet the causal run used, each beside the scan's concept it points most alike." }),
      table("causal", ["concept", "scan's concept", "members", "drop on its members", "largest on another concept's", "on random examples", "largest by a random direction", "the neuron's on its members", "selective"],
        C.concepts.map(function (c) { return ["c" + c.concept, scanConcept(N.pos, c.scan_concept, c.cosine), c.members, fmt(c.own, 3), fmt(c.other, 3), fmt(c.random_examples, 3), fmt(c.random_directions, 3), fmt(c.neuron, 3), c.selective ? "yes" : "no"]; }))];
  }
  // `conceptvec compare-dictionary`: each concept's matched atom (dictionary/compare.py)
  function atomTable(N) {
    var D = O.dictionary, rows = N.dictionary.concepts.map(function (c, j) {
      return [scanConcept(N.pos, j, null), c.atom < 0 ? "none" : "atom " + c.atom, c.cosine == null ? "–" : c.cosine.toFixed(3), c.member_share == null ? "–" : Math.round(c.member_share * 100) + "%", fmt(c.baseline_cosine, 3)];
    });
    return [el("h2", { text: "Beside the dictionary's atoms" }),
      el("p", { cls: "key", text: "From conceptvec compare-dictionary (" + D.method + ", " + D.n_atoms + " atoms" + (D.k ? ", k = " + D.k : "") + "): each concept matched one-to-one to the atoms that carry its top examples (Hungarian matching on cosine; they agree at cosine >= " + D.level + "), and the share of its members whose strongest atom it is." + (D.baseline ? " Baseline: " + D.baseline + "." : "") }),
      table("atoms", ["concept", "matched atom", "cosine", "members whose strongest atom it is", "baseline's cosine"], rows),
      el("p", { cls: "key", id: "atom-shares", text: "Atoms carrying the top examples (share of their code mass): " + N.dictionary.atoms.map(function (a) { return a[0] + " (" + Math.round(a[1] * 100) + "%)"; }).join(", ") })];
  }
  // The ward tree cut at t: each top example's cluster (merges at heights >= t not made), numbered by first member.
  function cut(n, Z, t) {
    var parent = new Int32Array(2 * n - 1).fill(-1), ids = new Map(), labels = new Array(n), k, i, r;
    for (k = 0; k < Z.length; k++) if (Z[k][2] < t) { parent[Z[k][0]] = n + k; parent[Z[k][1]] = n + k; }
    for (i = 0; i < n; i++) { r = i; while (parent[r] >= 0) r = parent[r]; if (!ids.has(r)) ids.set(r, ids.size); labels[i] = ids.get(r); }
    return { labels: labels, n: ids.size };
  }
  A.cut = cut;
  function tree(n, Z, width, height) {
    // leaf order of the dendrogram, then each node's x (mean of its children) and y (its height)
    var NS = "http://www.w3.org/2000/svg", svg = document.createElementNS(NS, "svg"), x = new Float64Array(2 * n - 1), y = new Float64Array(2 * n - 1);
    var top = Z.length ? Z[Z.length - 1][2] * 1.05 : 1, order = [], stack = [2 * n - 2];
    if (n === 1) stack = [0];
    while (stack.length) { var v = stack.pop(); if (v < n) order.push(v); else { stack.push(Z[v - n][1]); stack.push(Z[v - n][0]); } }
    order.forEach(function (leaf, k) { x[leaf] = (k + 0.5) * width / n; y[leaf] = height; });
    function line(x1, y1, x2, y2, cls) { var l = document.createElementNS(NS, "line"); l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2); if (cls) l.setAttribute("class", cls); svg.appendChild(l); }
    Z.forEach(function (z, k) {
      var a = z[0], b = z[1], h = height - z[2] / top * height, me = n + k;
      x[me] = (x[a] + x[b]) / 2; y[me] = h;
      line(x[a], y[a], x[a], h); line(x[b], y[b], x[b], h); line(x[a], h, x[b], h);
    });
    svg.setAttribute("class", "tree"); svg.setAttribute("width", width); svg.setAttribute("height", height + 2);
    var c = document.createElementNS(NS, "line"); c.setAttribute("class", "cut"); c.setAttribute("x1", 0); c.setAttribute("x2", width); svg.appendChild(c);
    svg.mark = function (t) { var yy = Math.max(0, height - t / top * height); c.setAttribute("y1", yy); c.setAttribute("y2", yy); };
    return svg;
  }
  function cutView(N) {
    var n = N.top.length, Z = N.linkage, tmax = Math.max(Z.length ? Z[Z.length - 1][2] * 1.05 : 1, N.threshold * 1.2);
    var range = el("input", { type: "range", id: "threshold", min: "0", max: String(tmax), step: String(tmax / 2000), value: String(N.threshold) });
    var shown = el("span", { id: "n-clusters" }), at = el("span"), reset = el("button", { type: "button", text: "back to the run's value" });
    var svg = tree(n, Z, Math.max(400, Math.min(1100, n * 11)), 160), host = el("div", { id: "clusters" });
    var tiles = N.top.map(function (t, k) {
      var b = t[2] >= 0 ? "c" + t[2] : t[2] === -2 ? "outlier" : "removed";
      return el("div", { cls: "ex", title: t[4] + " · activation " + fmt(t[1], 4) }, [tile(t[3], t[4]), el("span", { text: "#" + (k + 1) }),
        el("span", { cls: "badge", text: b, style: "background:" + colour(t[2]) })]);
    });
    function show(t) {
      var c = cut(n, Z, t), groups = [], frag = document.createDocumentFragment();
      for (var g = 0; g < c.n; g++) { var grid = el("div", { cls: "grid" }), head = el("div", { cls: "cluster-head" }); frag.appendChild(el("div", { cls: "cluster" }, [head, grid])); groups.push([head, grid, 0]); }
      for (var i = 0; i < n; i++) { groups[c.labels[i]][1].appendChild(tiles[i]); groups[c.labels[i]][2]++; }
      groups.forEach(function (g, k) { g[0].textContent = "cluster " + (k + 1) + " · " + g[2] + " example(s)"; });
      host.replaceChildren(frag);
      shown.textContent = String(c.n); at.textContent = (+t).toPrecision(4);
      svg.mark(t);
      document.body.dataset.clusters = String(c.n);
    }
    range.addEventListener("input", function () { show(+range.value); });
    reset.addEventListener("click", function () { range.value = N.threshold; show(N.threshold); });
    show(N.threshold);
    return el("div", {}, [el("div", { cls: "slider" }, [el("label", { for: "threshold", text: "distance threshold" }), range, reset]),
      el("p", {}, [shown, " cluster(s) at threshold ", at, " (run: " + fmt(N.threshold, 4) + ")"]), svg, host]);
  }

  // -- a concept --
  function conceptView(pos, j) {
    var R = O.rows;
    main.replaceChildren(el("p", { text: "Loading..." }));
    load(pos, function (N) {
      var c = N.concepts[j];
      if (!c) { main.replaceChildren(el("p", { cls: "warn", text: "Neuron " + R.neuron[pos] + " has no concept " + j + "." })); return; }
      var kids = [el("p", {}, [link("#n/" + pos, "← neuron " + N.neuron), " ", link("#", "all")]),
        el("h1", { text: (O.kind === "neurons" ? "Neuron " : "Direction ") + N.neuron + " · concept c" + j }),
        el("p", { cls: "lead", text: c.size + " members; commonest labels: " + (c.labels.map(function (l) { return l[0] + " (" + l[1] + ")"; }).join(", ") || "none") +
          (c.cos_concept != null ? "; members' mean cosine with the concept vector " + fmt(c.cos_concept, 3) : "") +
          (c.reappearance != null ? "; back in " + fmt(c.reappearance * 100, 0) + "% of the stability runs" : "") + "." })];
      var atom = N.dictionary && N.dictionary.concepts[j], causal = N.causal && N.causal.concepts.filter(function (x) { return x.scan_concept === j; });
      if (atom) kids.push(el("p", { id: "concept-atom", text: "Dictionary: matched to atom " + atom.atom + " at cosine " + (atom.cosine == null ? "–" : atom.cosine.toFixed(3)) + "; " + (atom.member_share == null ? "–" : Math.round(atom.member_share * 100) + "%") + " of its members have it as their strongest atom." }));
      (causal || []).forEach(function (x) { kids.push(el("p", { cls: "concept-causal", text: "Causal: the causal run's concept c" + x.concept + " (cosine " + fmt(x.cosine, 3) + " with this one): removing it drops the target logit by " + fmt(x.own, 3) + " on its members, at most " + fmt(x.other, 3) + " on another concept's, " + fmt(x.random_directions, 3) + " by a random direction: " + (x.selective ? "selective." : "not selective.") })); });
      kids.push(el("h2", { text: "Members (top activating examples of this concept)" }));
      var grid = el("div", { cls: "grid", id: "members" });
      N.top.forEach(function (t, k) { if (t[2] === j) grid.appendChild(el("div", { cls: "ex" }, [tile(t[3], t[4]), el("span", { text: "#" + (k + 1) })])); });
      kids.push(grid);
      if (c.projecting.length) {
        kids.push(el("h2", { text: "Maximally projecting examples (paper Fig. 3), over the whole dataset" }));
        var g2 = el("div", { cls: "grid" });
        c.projecting.forEach(function (p) { g2.appendChild(el("div", { cls: "ex" }, [tile(p[1]), el("span", { text: fmt(p[2], 3) })])); });
        kids.push(g2);
      }
      kids.push(el("h2", { text: "Nearest concepts of other neurons" }));
      if (c.group >= 0) kids.push(el("p", {}, ["Shared: this concept is in ", link("#shared/" + c.group, "group " + c.group), " (cosine above the layer's level " + fmt(O.shared.level, 3) + ")."]));
      var t = el("table", { cls: "plain", id: "near" });
      t.appendChild(el("tr", {}, [el("th", { text: "concept" }), el("th", { text: "cosine" }), el("th", { text: "its commonest label" })]));
      c.near.forEach(function (m) {
        t.appendChild(el("tr", {}, [el("td", {}, [link("#c/" + m[0] + "/" + m[1], "neuron " + R.neuron[m[0]] + " · c" + m[1])]),
          el("td", { text: fmt(m[2], 3) }), el("td", { text: O.map.label[offsets[m[0]] + m[1]] || "" })]));
      });
      kids.push(c.near.length ? t : el("p", { text: "No shared-concept search was run for this atlas." }));
      main.replaceChildren.apply(main, kids);
      document.body.dataset.view = "concept:" + N.neuron + ":" + j;
    });
  }

  // -- the layer: concepts per neuron beside the authors', and the map of every concept vector --
  function bars(ours, authors) {
    var NS = "http://www.w3.org/2000/svg", svg = document.createElementNS(NS, "svg"), keys = {}, k;
    for (k in ours) keys[k] = 1;
    for (k in authors || {}) keys[k] = 1;
    var xs = Object.keys(keys).map(Number).sort(function (a, b) { return a - b; });
    function share(h) { var s = 0, q, o = {}; for (q in h) s += h[q]; for (q in h) o[q] = s ? h[q] / s : 0; return o; }
    var so = share(ours), sa = authors ? share(authors) : null, W = 60, H = 180, top = 0;
    xs.forEach(function (x) { top = Math.max(top, so[x] || 0, sa ? sa[x] || 0 : 0); });
    svg.setAttribute("width", xs.length * W + 40); svg.setAttribute("height", H + 50); svg.setAttribute("class", "bars");
    function add(tag, at, text) { var e = document.createElementNS(NS, tag); for (var a in at) e.setAttribute(a, at[a]); if (text != null) e.textContent = text; svg.appendChild(e); return e; }
    xs.forEach(function (x, i) {
      var series = sa ? [["ours", so, ours], ["authors", sa, authors]] : [["ours", so, ours]], w = sa ? 22 : 40;
      series.forEach(function (s, k) {
        var h = (s[1][x] || 0) / (top || 1) * H, x0 = 20 + i * W + k * w;
        add("rect", { "class": s[0], x: x0, y: H - h + 20, width: w - 2, height: h });
        add("text", { x: x0, y: H - h + 16 }, String(s[2][x] || 0));
      });
      add("text", { x: 20 + i * W + 14, y: H + 38 }, String(x));
    });
    return svg;
  }
  function layerView() {
    var kids = [el("h1", { text: "The layer" }), el("h2", { text: "Concepts per neuron" }),
      el("p", { cls: "lead", text: "Live neurons by their number of concepts" + (O.not_live ? " (" + O.not_live + " not live, left out)" : "") +
        (O.authors ? "; red: the authors' Inception V3 Mixed_7b scan (4,232 concepts), as shares of each scan." : ".") }),
      bars(O.histogram, O.authors)];
    var T = O.thresholds;
    kids.push(el("h2", { text: "Concepts per neuron against the distance threshold" }));
    if (T) {
      kids.push(el("p", { cls: "lead", id: "thresholds-what", text: T.what }));
      if (T.how) kids.push(el("p", { cls: "key", text: T.how }));
      kids.push(el("img", { id: "thresholds", src: T.src, alt: "concepts per neuron against the distance threshold", style: "max-width:100%" }));
    } else kids.push(el("p", { cls: "key", id: "thresholds-none", text: "No tree to cut: no live neuron has top examples that differ." }));
    kids.push(el("h2", { text: "Map of every concept vector" }));
    var select = el("select", { id: "map-colour" }, [el("option", { value: "neuron", text: "colour by neuron" }), el("option", { value: "label", text: "colour by label" })]);
    kids.push(el("p", { cls: "lead" }, ["Laid out by " + O.map.method + ". Hover for a concept, click to open it. ", select]));
    var canvas = el("canvas", { id: "map", width: "900", height: "600" });
    kids.push(canvas);
    main.replaceChildren.apply(main, kids);
    drawMap(canvas, select);
    document.body.dataset.view = "layer";
  }
  function hue(s) { var h = 0; for (var i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0; return "hsl(" + (h % 360) + ",65%,45%)"; }
  function drawMap(canvas, select) {
    var M = O.map, ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, n = M.x.length, hover = document.getElementById("hover");
    function px(i) { return [10 + M.x[i] * (W - 20), 10 + (1 - M.y[i]) * (H - 20)]; }
    function paint() {
      ctx.clearRect(0, 0, W, H);
      for (var i = 0; i < n; i++) {
        var p = px(i);
        ctx.fillStyle = select.value === "label" ? hue(M.label[i] || "") : hue("n" + O.rows.neuron[M.pos[i]]);
        ctx.fillRect(p[0] - 2.5, p[1] - 2.5, 5, 5);
      }
    }
    function nearest(e) {
      var r = canvas.getBoundingClientRect(), x = (e.clientX - r.left) * W / r.width, y = (e.clientY - r.top) * H / r.height, best = -1, bd = 64;
      for (var i = 0; i < n; i++) { var p = px(i), d = (p[0] - x) * (p[0] - x) + (p[1] - y) * (p[1] - y); if (d < bd) { bd = d; best = i; } }
      return best;
    }
    canvas.addEventListener("mousemove", function (e) {
      var i = nearest(e);
      if (i < 0) { hover.hidden = true; return; }
      var pos = M.pos[i], kids = [el("div", { text: "neuron " + O.rows.neuron[pos] + " · c" + M.concept[i] + (M.label[i] ? " · " + M.label[i] : "") })];
      if (M.thumb && M.thumb[i] != null) kids.push(tile(M.thumb[i]));
      hover.replaceChildren.apply(hover, kids);
      hover.style.left = e.clientX + 14 + "px"; hover.style.top = e.clientY + 14 + "px"; hover.hidden = false;
    });
    canvas.addEventListener("mouseleave", function () { hover.hidden = true; });
    canvas.addEventListener("click", function (e) { var i = nearest(e); if (i >= 0) { hover.hidden = true; location.hash = "#c/" + M.pos[i] + "/" + M.concept[i]; } });
    select.addEventListener("change", paint);
    paint();
  }

  // -- shared concepts --
  function sharedView(only) {
    var S = O.shared;
    if (!S) { main.replaceChildren(el("p", { cls: "warn", text: "This atlas was written without shared concepts (write_atlas(..., shared=False))." })); return; }
    var draws = S.baseline.length, hit = S.baseline.filter(function (g) { return g > 0; }).length;
    var kids = [el("h1", { text: "Shared concepts: " + S.groups.length + " group(s)" }),
      el("p", { cls: "lead", text: "Concept vectors of different neurons that point the same way: linked when their cosine exceeds " + fmt(S.level, 3) +
        ", the level at which two concepts are more alike than any pair of this layer's concepts would be by chance (family-wise significance " +
        S.params.significance + "). Baseline: random directions of the layer (" + S.params.baseline + ") went through the same test and formed a group in " +
        hit + " of " + draws + " draws. Overlap: the members' examples two neurons have in common (Jaccard)." })];
    var t = el("table", { cls: "plain", id: "shared" });
    t.appendChild(el("tr", {}, ["group", "concepts", "mean cosine", "least cosine", "overlap", "labels"].map(function (x) { return el("th", { text: x }); })));
    S.groups.forEach(function (g, k) {
      if (only != null && k !== only) return;
      var cell = el("td");
      g.concepts.forEach(function (c, i) { if (i) cell.appendChild(document.createTextNode(", ")); cell.appendChild(link("#c/" + c[0] + "/" + c[1], O.rows.neuron[c[0]] + ":c" + c[1])); });
      t.appendChild(el("tr", { id: "group-" + k }, [el("td", { text: String(k) }), cell, el("td", { text: fmt(g.mean_cosine, 3) }), el("td", { text: fmt(g.min_cosine, 3) }),
        el("td", { text: fmt(g.overlap, 2) }), el("td", { text: g.labels.join(", ") })]));
    });
    kids.push(t);
    if (only != null) kids.push(el("p", {}, [link("#shared", "all groups")]));
    main.replaceChildren.apply(main, kids);
    document.body.dataset.view = "shared";
  }

  function route() {
    var h = location.hash.replace(/^#/, "").split("/"), R = O.rows;
    A.keys = null;
    document.getElementById("hover").hidden = true;
    if (h[0] === "n" && +h[1] >= 0 && +h[1] < R.neuron.length) neuronView(+h[1]);
    else if (h[0] === "c" && +h[1] >= 0 && +h[1] < R.neuron.length) conceptView(+h[1], +h[2] || 0);
    else if (h[0] === "layer") layerView();
    else if (h[0] === "shared") sharedView(h[1] != null && h[1] !== "" ? +h[1] : null);
    else overview();
    window.scrollTo(0, 0);
  }
  document.addEventListener("keydown", function (e) {
    if (A.keys) return A.keys(e);
    var h = location.hash.split("/");
    if (e.target && e.target.tagName === "INPUT") return;
    if (e.key === "Escape") location.hash = "";
    else if (h[0] === "#n" && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
      var p = +h[1] + (e.key === "ArrowRight" ? 1 : -1);
      if (p >= 0 && p < O.rows.neuron.length) location.hash = "#n/" + p;
    }
  });
  function start() {
    O = A.overview;
    main = document.getElementById("main");
    if (!O) { main.replaceChildren(el("p", { cls: "warn", text: "data/overview.js is missing: the atlas folder is incomplete; write it again." })); return; }
    document.getElementById("title").textContent = O.title;
    document.title = "atlas · " + O.layer;
    offsets = [0];
    O.rows.concepts.forEach(function (k) { offsets.push(offsets[offsets.length - 1] + k); });
    window.addEventListener("hashchange", route);
    route();
    A.readyAt = performance.now();  // ms since navigation began
    document.body.dataset.ready = "1";
  }
  document.addEventListener("DOMContentLoaded", start);
})();
