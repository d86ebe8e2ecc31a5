// The public API with the user's bearer token: reads, paged lists, and watch streams (NDJSON read from
// fetch, since EventSource cannot send an Authorization header) that reconnect and report when stale.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

export class Api {
  constructor(token, onUnauthenticated) {
    this.token = token;
    this.onUnauthenticated = onUnauthenticated || (() => {});
  }

  headers(extra) {
    return { Authorization: `Bearer ${this.token}`, Accept: "application/json", ...(extra || {}) };
  }

  url(path, params) {
    const url = new URL(path, window.location.origin);
    for (const [key, value] of Object.entries(params || {})) if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    return url;
  }

  // `early`: a fetch of the same first page already under way (boot.js), used instead of a new one.
  async get(path, params, early) {
    const response = (early && await early) || await fetch(this.url(path, params), { headers: this.headers(), cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (response.status === 401) this.onUnauthenticated(new ApiError(401, body));
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // Every page of a list: {items, resourceVersion}.
  async list(path, params, early) {
    let items = [];
    let token = null;
    let resourceVersion = null;
    do {
      const page = await this.get(path, { ...(params || {}), limit: 1000, continue: token }, token ? null : early);
      items = items.concat(page.items || []);
      resourceVersion = resourceVersion ?? page.metadata?.resourceVersion;
      token = page.metadata?.continue || null;
    } while (token);
    return { items, resourceVersion };
  }

  // A watch that keeps itself open: `relist()` gives the current objects and revision (called at start and
  // after a `compacted` answer), `onEvent(event)` gets each change, `onState("live"|"stale", why)` the state.
  // `after`: a promise the first stream waits for once relisted (the events it missed meanwhile come after).
  watch(path, params, { relist, onEvent, onState, after }) {
    const controller = { stopped: false, abort: null };
    let revision = null;
    let delayMs = 500;
    const run = async () => {
      while (!controller.stopped) {
        try {
          if (revision === null) revision = await relist();
          if (after) { await after; after = null; }
          const abort = new AbortController();
          controller.abort = abort;
          const response = await fetch(this.url(path, { ...(params || {}), watch: "true", resourceVersion: revision, timeoutSeconds: 3600 }),
            { headers: this.headers({ Accept: "application/x-ndjson" }), signal: abort.signal, cache: "no-store" });
          if (response.status === 401) { this.onUnauthenticated(new ApiError(401, null)); return; }
          if (!response.ok || !response.body) throw new ApiError(response.status, null);
          onState("live");
          delayMs = 500;
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let newline;
            while ((newline = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, newline);
              buffer = buffer.slice(newline + 1);
              if (!line.trim()) continue;
              const event = JSON.parse(line);
              if (event.type === "ERROR") { revision = null; throw new Error(event.object?.message || "watch error"); }
              const rv = event.object?.metadata?.resourceVersion;
              if (typeof rv === "number" && rv > revision) revision = rv;
              onEvent(event);
            }
          }
          if (!controller.stopped) onState("stale", "the stream ended; reconnecting");
        } catch (error) {
          if (controller.stopped) return;
          onState("stale", String(error && error.message || error));
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, 8000);
      }
    };
    run();
    return { stop() { controller.stopped = true; if (controller.abort) controller.abort.abort(); } };
  }
}
