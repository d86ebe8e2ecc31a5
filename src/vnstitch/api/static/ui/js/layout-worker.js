// The graph layout off the page's main thread (topology.js graphPoints): [id, names, edges] in, [id, points] out.

import { fit, graphLayout } from "./layout.js";

// a small ring laid out at start: the layout's code is compiled before the substrate arrives
const ring = Array.from({ length: 40 }, (_, i) => `n${i}`);
graphLayout(ring, ring.map((name, i) => [name, ring[(i + 1) % ring.length]]));

self.onmessage = (event) => {
  const [id, names, edges] = event.data;
  self.postMessage([id, [...fit(graphLayout(names, edges))]]);
};
