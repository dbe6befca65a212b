// The neuron page's distance-threshold slider: re-cuts the ward tree of the top examples in the
// browser and regroups their tiles. Reads the JSON in #cut-data; templates/neuron.html inlines it.
(function () {
  "use strict";
  var el = document.getElementById("cut-data");
  if (!el) return;
  var D = JSON.parse(el.textContent), N = D.n, Z = D.linkage;
  // Cluster of each top example when merges at heights >= t are not made (the method's step 2,
  // equal to SciPy's fcluster(Z, t, "distance") for any t that is not itself a merge height).
  // Clusters are numbered in order of their most activating member.
  function cut(t) {
    var parent = new Int32Array(2 * N - 1).fill(-1), k, i, r;
    for (k = 0; k < Z.length; k++) {
      if (Z[k][2] < t) { parent[Z[k][0]] = N + k; parent[Z[k][1]] = N + k; }
    }
    var ids = new Map(), labels = new Array(N);
    for (i = 0; i < N; i++) {
      r = i;
      while (parent[r] >= 0) r = parent[r];
      if (!ids.has(r)) ids.set(r, ids.size);
      labels[i] = ids.get(r);
    }
    return { labels: labels, n: ids.size };
  }
  window.conceptvecCut = cut;
  var slider = document.getElementById("threshold"), box = document.getElementById("threshold-value");
  var tiles = Array.prototype.slice.call(document.getElementById("tiles").children);
  var host = document.getElementById("clusters");
  function show(t) {
    var t0 = performance.now(), c = cut(t), groups = [], g, i;
    var frag = document.createDocumentFragment();
    for (g = 0; g < c.n; g++) {
      var box_ = document.createElement("div"), head = document.createElement("div"), grid = document.createElement("div");
      box_.className = "cluster";
      head.className = "cluster-head"; grid.className = "grid";
      box_.appendChild(head); box_.appendChild(grid); frag.appendChild(box_);
      groups.push({ head: head, grid: grid, n: 0 });
    }
    for (i = 0; i < N; i++) { groups[c.labels[i]].grid.appendChild(tiles[i]); groups[c.labels[i]].n++; }
    for (g = 0; g < c.n; g++) groups[g].head.textContent = "cluster " + (g + 1) + " · " + groups[g].n + " example(s)";
    host.replaceChildren(frag);
    document.getElementById("n-clusters").textContent = String(c.n);
    document.getElementById("threshold-shown").textContent = (+t).toPrecision(4).replace(/\.?0+$/, "");
    document.getElementById("cut-ms").textContent = (performance.now() - t0).toFixed(1);
    document.body.dataset.clusters = String(c.n);
  }
  slider.addEventListener("input", function () { box.value = slider.value; show(+slider.value); });
  box.addEventListener("input", function () { if (box.value !== "" && isFinite(+box.value)) { slider.value = box.value; show(+box.value); } });
  document.getElementById("threshold-reset").addEventListener("click", function () {
    slider.value = D.run_threshold; box.value = D.run_threshold; show(D.run_threshold);
  });
  show(D.run_threshold);
})();
