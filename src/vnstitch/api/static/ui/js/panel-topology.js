// Topology tab: the substrate map with utilisation colours and stitches, and the picked link's figures.

import { el, clear } from "./dom.js";
import { S, linkLoads, visibleStitches } from "./state.js";
import { TopologyMap, UTIL_CLASSES } from "./topology.js";
import { schedule, renderNow } from "./app.js";

export class TopologyPanel {
  constructor() {
    this.id = "topology";
    this.title = "Topology";
    this.root = el("section", { class: "view", id: "view-topology" });
    this.info = el("pre", { class: "mono", id: "link-info", text: "Hover a link for its figures; click one to keep them here." });
    this.summary = el("p", { class: "muted", id: "topology-summary" });
    const mapHost = el("div", { id: "map" });
    const legend = el("div", { class: "legend" }, "measured utilisation:",
      el("span", {}, el("span", { class: "swatch sw-none" }), "no measured traffic"),
      ...UTIL_CLASSES.map(([bound], i) => el("span", {}, el("span", { class: `swatch sw-${i}` }),
        i === 0 ? `< ${bound * 100}%` : bound === Infinity ? `≥ ${UTIL_CLASSES[i - 1][0] * 100}%` : `< ${bound * 100}%`)),
      el("span", {}, el("span", { class: "swatch sw-stitch" }), "stitch paths"));
    this.root.append(el("div", { class: "row" },
      el("div", { class: "card grow" }, el("h2", { text: "Substrate" }), this.summary, mapHost, legend),
      el("div", { class: "card side" }, el("h2", { text: "Link" }), this.info)));
    this.map = new TopologyMap(mapHost, document.getElementById("tooltip"), {
      onLinkPick: (name, text) => { this.info.textContent = text; this.info.dataset.link = name; },
      // the map has just been built: stitches and colours go into the same frame (one style, layout and paint
      // pass) instead of the next one, and the frame that was asked for (the stitch list's) is not drawn again
      onDrawn: () => (this.root.classList.contains("active") ? renderNow() : schedule(true)),
    });
    this.map.setSubstrate(S.nodes, S.links, S.layout);
    this.drawnAt = null;
  }

  // the set of links changed: the server lays the new substrate out (the page does where it cannot)
  onSubstrate() { this.map.setSubstrate(S.nodes, S.links, S.api.get("/v1/substrate/layout")); }

  // `outsideFrame`: called from a task rather than a frame's callback (onDrawn, above)
  render(outsideFrame = false) {
    if (!this.map.drawn) {  // still being laid out: nothing to colour or draw on yet (onDrawn renders)
      this.summary.textContent = `${S.nodes.length} nodes, ${S.links.length} links (laying out …)`;
      return;
    }
    const stitches = visibleStitches().filter(([, s]) => s.status?.state !== "TERMINATED");
    const loads = linkLoads(stitches);
    this.map.setLoads(loads);
    this.map.setStitches(new Map(stitches.map(([key, s]) => [key, { path: s.status?.path || [], selected: key === S.selected }])));
    const measured = [...loads.values()].filter((l) => l.util !== null).length;
    this.summary.textContent = `${S.nodes.length} nodes, ${S.links.length} links (${this.map.geographic ? "geographic layout" : "graph layout"}); `
      + `${stitches.length} stitches shown${S.filters.tenant ? ` of tenant ${S.filters.tenant}` : ""}; ${measured} links with measured traffic`;
    if (!S.stitchesLoaded || !this.map.drawn || this.drawnAt !== null) return;
    this.drawnAt = 0;
    // interactive once this frame (map, colours, every stitch) has been painted: a task queued from the
    // frame's callback runs after its rendering steps (outside a frame: from the next frame's callback)
    const mark = () => setTimeout(() => {
      this.drawnAt = performance.now();
      performance.mark("vnstitch:topology-interactive");
      S.interactive = true;
      S.onInteractive?.();
      this.root.dataset.ready = "true";
    }, 0);
    if (outsideFrame) requestAnimationFrame(mark);
    else mark();
  }
}
