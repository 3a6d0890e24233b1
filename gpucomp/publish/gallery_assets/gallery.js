// gpucomp gallery: a virtualised grid with trait filters, sorting, search, an item view and
// per-layer charts. Plain JavaScript, no library, no network: data arrives through
// GALLERY.load (data/index.js) and GALLERY.addMeta (data/meta-NNNN.js, loaded on demand).
// Every text from the collection is set with textContent, never parsed as HTML.
"use strict";
(function () {
  const CELL = 168, LABEL = 22, GAP = 8, OVERSCAN = 2;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmtInt = (n) => n.toLocaleString("en-US");
  const pct = (x) => (x === null || x === undefined ? "–" : `${Number(x).toFixed(2)}%`);

  let D = null;                 // the index (data/index.js)
  let N = 0, L = 0;
  let traitCols = [];           // per layer: Int32Array of trait index per item position
  let selected = [];            // per layer: Uint8Array mask of selected traits
  let nSelected = [];           // per layer: how many selected
  let view = new Int32Array(0); // item positions shown, in sort order
  let match = null;             // Uint8Array: item passes the filters
  const orders = {};            // sort key -> Int32Array of positions
  const meta = new Map();       // chunk -> items; chunk -> [callbacks] while loading
  const waiting = new Map();
  let current = -1;             // position shown in the item view
  const stats = { readyMs: null, lastFilterMs: null, lastRenderMs: null };

  function fail(message) {
    document.body.classList.add("failed");
    $("count").textContent = message;
  }

  // ------------------------------------------------------------------ sorting

  function order(key) {
    if (orders[key]) return orders[key];
    const o = new Int32Array(N);
    if (key === "number") {
      for (let i = 0; i < N; i++) o[i] = i;
    } else {
      const r = key === "rank" ? D.ranks : D.openrarity;  // OpenRarity ranks may tie: ties by number
      const idx = Array.from({ length: N }, (_, i) => i);
      idx.sort((a, b) => r[a] - r[b] || a - b);
      o.set(idx);
    }
    return (orders[key] = o);
  }

  // ------------------------------------------------------------------ filtering

  // One pass over the items: an item passes if in every layer with a selection its trait is
  // selected. A trait's count is how many items would pass with it selected in its own layer
  // (the filters of the other layers apply): items that pass count for all their traits,
  // items that fail in exactly one layer count for their trait in that layer.
  function applyFilters() {
    const t0 = performance.now();
    const active = [];
    for (let l = 0; l < L; l++) if (nSelected[l]) active.push(l);
    const counts = D.layers.map((layer) => new Int32Array(layer.traits.length));
    match = new Uint8Array(N);
    for (let i = 0; i < N; i++) {
      let miss = 0, missL = -1;
      for (let k = 0; k < active.length; k++) {
        const l = active[k];
        if (!selected[l][traitCols[l][i]]) { miss++; missL = l; if (miss > 1) break; }
      }
      if (miss === 0) {
        match[i] = 1;
        for (let l = 0; l < L; l++) counts[l][traitCols[l][i]]++;
      } else if (miss === 1) {
        counts[missL][traitCols[missL][i]]++;
      }
    }
    showCounts(counts);
    rebuildView();
    stats.lastFilterMs = performance.now() - t0;
  }

  function rebuildView() {
    const o = order($("sort").value);
    const v = new Int32Array(N);
    let n = 0;
    for (let k = 0; k < N; k++) if (match[o[k]]) v[n++] = o[k];
    view = v.subarray(0, n);
    const active = nSelected.reduce((a, b) => a + b, 0);
    $("count").textContent = active ? `${fmtInt(n)} of ${fmtInt(N)} items` : `${fmtInt(N)} items`;
    $("clear").disabled = !active;
    resetGrid();
  }

  function showCounts(counts) {
    for (const box of document.querySelectorAll("#filters input[type=checkbox]")) {
      const l = +box.dataset.layer, t = +box.dataset.trait;
      const c = counts[l][t];
      const label = box.parentElement;
      label.querySelector(".n").textContent = fmtInt(c);
      label.classList.toggle("zero", c === 0 && !box.checked);
    }
  }

  function setTrait(l, t, on) {
    if (!!selected[l][t] === on) return;
    selected[l][t] = on ? 1 : 0;
    nSelected[l] += on ? 1 : -1;
    const box = document.querySelector(`#filters input[data-layer="${l}"][data-trait="${t}"]`);
    if (box) box.checked = on;
  }

  function buildFilters() {
    const root = $("filters");
    D.layers.forEach((layer, l) => {
      const d = el("details");
      d.open = layer.traits.length <= 12;
      d.append(el("summary", null, `${layer.name} (${layer.traits.length})`));
      layer.traits.forEach((trait, t) => {
        const label = el("label", "trait");
        label.title = trait.name;  // names cut short by the column width
        const box = el("input");
        box.type = "checkbox";
        box.dataset.layer = l;
        box.dataset.trait = t;
        box.addEventListener("change", () => { setTrait(l, t, box.checked); applyFilters(); });
        label.append(box, el("span", "name", trait.name), el("span", "n", fmtInt(trait.count)));
        d.append(label);
      });
      root.append(d);
    });
  }

  // ------------------------------------------------------------------ the virtualised grid

  const grid = { cols: 1, cell: CELL, rowH: CELL + LABEL + GAP, live: new Map(), free: [], frame: 0 };

  function resetGrid() {
    for (const [, cell] of grid.live) { cell.remove(); grid.free.push(cell); }
    grid.live.clear();
    $("grid").scrollTop = 0;
    layoutGrid();
  }

  function layoutGrid() {
    const g = $("grid");
    grid.cols = Math.max(1, Math.floor((g.clientWidth - GAP) / (CELL + GAP)));
    grid.cell = Math.max(CELL, Math.floor((g.clientWidth - GAP) / grid.cols) - GAP);  // fill the width
    grid.rowH = grid.cell + LABEL + GAP;
    $("sizer").style.setProperty("--cell", `${grid.cell}px`);
    for (const [k, cell] of grid.live) place(cell, k);
    $("sizer").style.height = `${Math.ceil(view.length / grid.cols) * grid.rowH + GAP}px`;
    renderGrid();
  }

  function makeCell() {
    const a = el("a", "cell");
    a.href = "#";
    const img = el("img");
    img.alt = "";
    img.decoding = "async";
    a.append(img, el("span", "label"));
    a.addEventListener("click", (ev) => { ev.preventDefault(); openItem(+a.dataset.pos); });
    return a;
  }

  function place(cell, k) {
    cell.style.transform = `translate(${GAP + (k % grid.cols) * (grid.cell + GAP)}px, ${GAP + Math.floor(k / grid.cols) * grid.rowH}px)`;
  }

  function renderGrid() {
    const t0 = performance.now();
    const g = $("grid");
    const first = Math.max(0, Math.floor(g.scrollTop / grid.rowH) - OVERSCAN);
    const last = Math.ceil((g.scrollTop + g.clientHeight) / grid.rowH) + OVERSCAN;
    const lo = first * grid.cols, hi = Math.min(view.length, last * grid.cols);
    for (const [k, cell] of grid.live) {
      if (k < lo || k >= hi) { cell.remove(); grid.live.delete(k); grid.free.push(cell); }
    }
    const sizer = $("sizer");
    const rankKey = $("sort").value === "openrarity" ? "openrarity" : "ranks";
    for (let k = lo; k < hi; k++) {
      if (grid.live.has(k)) continue;
      const pos = view[k], number = D.numbers[pos];
      const cell = grid.free.pop() || makeCell();
      cell.dataset.pos = pos;
      cell.dataset.number = number;
      place(cell, k);
      cell.firstChild.src = `thumbs/${number}.${D.thumb.format}`;
      cell.lastChild.textContent = `#${number} · rank ${D[rankKey][pos]}`;
      grid.live.set(k, cell);
      sizer.append(cell);
    }
    stats.lastRenderMs = performance.now() - t0;
  }

  function scheduleRender() {
    if (!grid.frame) grid.frame = requestAnimationFrame(() => { grid.frame = 0; renderGrid(); });
  }

  function scrollToPos(pos) {
    const k = view.indexOf(pos);
    if (k < 0) return false;
    const g = $("grid");
    g.scrollTop = Math.max(0, Math.floor(k / grid.cols) * grid.rowH - g.clientHeight / 3);
    renderGrid();
    return true;
  }

  // ------------------------------------------------------------------ the item view

  function loadChunk(c, done) {
    if (meta.has(c)) { done(meta.get(c)); return; }
    if (waiting.has(c)) { waiting.get(c).push(done); return; }
    waiting.set(c, [done]);
    const s = document.createElement("script");
    s.src = `data/meta-${String(c).padStart(4, "0")}.js`;
    s.onerror = () => { waiting.delete(c); done(null); };
    document.head.append(s);
  }

  function addMeta(chunk) {
    meta.set(chunk.chunk, chunk.items);
    for (const done of waiting.get(chunk.chunk) || []) done(chunk.items);
    waiting.delete(chunk.chunk);
  }

  function openItem(pos) {
    current = pos;
    const number = D.numbers[pos];
    history.replaceState(null, "", `#${number}`);  // a link to the item
    $("item-view").hidden = false;
    $("item-title").textContent = `#${number}`;
    const img = $("item-image");
    img.removeAttribute("src");
    img.src = `../images/${(D.image || "{n}.png").replace("{n}", number)}`;  // the primary image
    const orank = D.openrarity ? ` · OpenRarity rank ${fmtInt(D.openrarity[pos])}` : "";
    $("item-rank").textContent = `Rarity rank ${fmtInt(D.ranks[pos])} of ${fmtInt(N)}${orank}`;
    const body = $("item-attrs").tBodies[0];
    body.replaceChildren();
    D.layers.forEach((layer, l) => {
      const t = traitCols[l][pos], trait = layer.traits[t];
      const tr = el("tr", trait.off ? "off" : "");
      tr.dataset.layer = l;
      tr.dataset.trait = t;
      tr.title = "Show only items with this trait";
      tr.append(el("td", null, layer.name), el("td", null, trait.name), el("td", null, pct(trait.percent)),
                el("td", null, fmtInt(trait.count)));
      body.append(tr);
    });
    $("item-json").textContent = "loading…";
    const c = Math.floor(pos / D.meta_chunk);
    loadChunk(c, (items) => {
      if (current !== pos) return;
      if (!items) { $("item-json").textContent = "metadata file missing: run `gpucomp gallery` again"; return; }
      const [score, logr, m] = items[pos - c * D.meta_chunk];
      $("item-title").textContent = m.name || `#${number}`;
      $("item-rank").textContent += ` · score ${score.toFixed(3)} · log rarity ${logr.toFixed(3)}`;
      $("item-json").textContent = JSON.stringify(m, null, 2);
    });
  }

  function step(d) {
    const k = view.indexOf(current);
    if (k >= 0 && k + d >= 0 && k + d < view.length) openItem(view[k + d]);
  }

  function closeItem() {
    $("item-view").hidden = true;
    current = -1;
    history.replaceState(null, "", location.pathname + location.search);
  }

  // ------------------------------------------------------------------ charts

  function buildCharts() {
    const root = $("charts");
    const sigma = D.sigma;
    const off = [];
    D.layers.forEach((layer) => layer.traits.forEach((t) => { if (t.off) off.push(`${layer.name}: ${t.name} (z ${t.z})`); }));
    const head = el("div", "chart-head");
    head.append(el("p", null, D.weights_known
      ? `Per layer: observed share (filled bar, first figure) against the share its weight asked for ` +
        `(outlined bar, second figure) and z, the difference in standard deviations. ` +
        `Traits more than ${sigma} sigma away are marked red: ${off.length ? off.join("; ") : "none"}.`
      : "Per layer: observed share. What was asked is not known for this collection (several stacks)."));
    root.append(head);
    D.layers.forEach((layer) => {
      const sec = el("section", "chart");
      sec.append(el("h3", null, layer.name));
      const top = Math.max(1e-9, ...layer.traits.map((t) => Math.max(t.percent || 0, t.weight_percent || 0)));
      for (const t of layer.traits) {
        const row = el("div", t.off ? "chart-row off" : "chart-row");
        const bars = el("div", "bars");
        const obs = el("div", "bar obs");
        obs.style.width = `${(100 * (t.percent || 0)) / top}%`;
        bars.append(obs);
        if (t.weight_percent !== null && t.weight_percent !== undefined) {
          const ask = el("div", "bar ask");
          ask.style.width = `${(100 * t.weight_percent) / top}%`;
          bars.append(ask);
        }
        const z = t.z === null || t.z === undefined ? "" : ` · z ${t.z > 0 ? "+" : ""}${t.z}`;
        const asked = t.weight_percent === null || t.weight_percent === undefined ? "" : ` / ${pct(t.weight_percent)}`;
        // a weight uniqueness cannot give at this size: the share it allows, which the trait is judged against
        const reach = t.achievable_percent === undefined ? "" : ` · achievable ${pct(t.achievable_percent)}` +
          (t.reachable_percent ? ` (unique items allow ${pct(t.reachable_percent[0])}–${pct(t.reachable_percent[1])})` : "");
        const vals = el("span", "vals", `${pct(t.percent)}${asked}${z}`);
        if (reach) vals.append(el("span", "reach", reach.slice(3)));  // its own line: the figures stay on one
        row.append(el("span", "name", t.name), bars, vals);
        sec.append(row);
      }
      root.append(sec);
    });
  }

  function toggleCharts() {
    const charts = $("charts");
    if (!charts.childElementCount) buildCharts();
    charts.hidden = !charts.hidden;
    $("grid").hidden = !charts.hidden;
    $("charts-toggle").setAttribute("aria-pressed", String(!charts.hidden));
    if (charts.hidden) layoutGrid();
  }

  // ------------------------------------------------------------------ search and wiring

  function search(ev) {
    ev.preventDefault();
    const text = $("search").value.trim().replace(/^#/, "");
    const msg = $("search-msg");
    msg.textContent = "";
    if (!/^\d+$/.test(text)) { msg.textContent = "type an item number"; return; }
    const n = Number(text), pos = find(n);
    if (pos < 0) { msg.textContent = `no item #${n}`; return; }
    if (!$("charts").hidden) toggleCharts();
    if (!scrollToPos(pos)) msg.textContent = "not among the filtered items";
    openItem(pos);
  }

  function find(n) {  // position of item number n, or -1 (numbers are in increasing order)
    let lo = 0, hi = N - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (D.numbers[mid] === n) return mid;
      if (D.numbers[mid] < n) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  function openFromHash() {  // index.html#123 opens item 123
    const linked = /^#(\d+)$/.exec(location.hash);
    const pos = linked ? find(Number(linked[1])) : -1;
    if (pos >= 0 && pos !== current) { scrollToPos(pos); openItem(pos); }
  }

  function wire() {
    window.addEventListener("hashchange", openFromHash);
    $("grid").addEventListener("scroll", scheduleRender, { passive: true });
    window.addEventListener("resize", () => { if ($("charts").hidden) layoutGrid(); });
    $("sort").addEventListener("change", rebuildView);
    $("search-form").addEventListener("submit", search);
    $("clear").addEventListener("click", () => {
      for (let l = 0; l < L; l++) for (let t = 0; t < selected[l].length; t++) setTrait(l, t, false);
      applyFilters();
    });
    $("charts-toggle").addEventListener("click", toggleCharts);
    $("item-close").addEventListener("click", closeItem);
    $("item-prev").addEventListener("click", () => step(-1));
    $("item-next").addEventListener("click", () => step(1));
    $("item-view").addEventListener("click", (ev) => { if (ev.target === $("item-view")) closeItem(); });
    $("item-attrs").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-layer]");
      if (!tr) return;
      setTrait(+tr.dataset.layer, +tr.dataset.trait, true);
      closeItem();
      applyFilters();
    });
    document.addEventListener("keydown", (ev) => {
      if ($("item-view").hidden) return;
      if (ev.key === "Escape") closeItem();
      else if (ev.key === "ArrowLeft") step(-1);
      else if (ev.key === "ArrowRight") step(1);
    });
  }

  function load(data) {
    if (data.format !== 1) { fail(`data/index.js has format ${data.format}; this page reads format 1`); return; }
    D = data;
    N = data.items;
    L = data.layers.length;
    traitCols = data.traits.map((col) => Int32Array.from(col));
    selected = data.layers.map((layer) => new Uint8Array(layer.traits.length));
    nSelected = data.layers.map(() => 0);
    document.title = `${data.title} · gpucomp gallery`;
    $("title").textContent = data.title;
    if (data.openrarity) $("sort").append(new Option("OpenRarity rank", "openrarity"));
    if (data.thumb.image && data.thumb.image[0] <= data.thumb.size) document.body.classList.add("pixel-art");
    buildFilters();
    wire();
    applyFilters();
    openFromHash();
    stats.readyMs = performance.now();
    document.body.dataset.ready = "1";
  }

  window.GALLERY = { load, addMeta, fail, stats, openItem };
})();
