// The page's own graph layout off its main thread, where the server's (GET /v1/substrate/layout) cannot be had
// (topology.js graphPoints): [id, names, edges] in, [id, points] out.

import { fit, graphLayout } from "./layout.js";

self.onmessage = (event) => {
  const [id, names, edges] = event.data;
  self.postMessage([id, [...fit(graphLayout(names, edges))]]);
};
