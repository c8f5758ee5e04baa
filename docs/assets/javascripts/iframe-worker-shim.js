// Search on file://: browsers refuse Web Workers for pages opened from disk,
// and Material's search runs in a worker. This replaces `Worker` (on file://
// only) with one that runs the worker script in a hidden iframe of the same
// page. Written for slurmc's docs so that the site fetches nothing from the
// internet at view time (Material's offline plugin would otherwise add a
// script from unpkg.com; it skips that when a polyfill named
// "iframe-worker" is configured, which this file is, in mkdocs.yml).
"use strict";
(function () {
  if (location.protocol !== "file:") return;

  class FrameWorker extends EventTarget {
    constructor(url) {
      super();
      this.url = String(url);
      this.onmessage = null;
      this.onerror = null;
      const frame = document.createElement("iframe");
      frame.hidden = true;
      document.body.appendChild(frame);
      this.frame = frame;
      const inner = frame.contentWindow;
      // Inside the frame: postMessage goes to the page, importScripts loads
      // <script> elements one after the other.
      inner.postMessage = (data) => this.deliver(data);
      inner.importScripts = (...urls) =>
        urls.reduce(
          (done, src) =>
            done.then(
              () =>
                new Promise((resolve, reject) => {
                  const s = inner.document.createElement("script");
                  s.src = src;
                  s.onload = resolve;
                  s.onerror = reject;
                  inner.document.body.appendChild(s);
                })
            ),
          Promise.resolve()
        );
      this.ready = new Promise((resolve, reject) => {
        const s = inner.document.createElement("script");
        s.src = this.url;
        s.onload = resolve;
        s.onerror = (e) => {
          this.fail(e);
          reject(e);
        };
        inner.document.body.appendChild(s);
      });
    }
    deliver(data) {
      const event = new MessageEvent("message", { data });
      this.dispatchEvent(event);
      if (this.onmessage) this.onmessage(event);
    }
    fail(cause) {
      const event = new ErrorEvent("error", { message: String(cause), filename: this.url });
      this.dispatchEvent(event);
      if (this.onerror) this.onerror(event);
    }
    postMessage(data) {
      this.ready.then(() => {
        const inner = this.frame.contentWindow;
        inner.dispatchEvent(new MessageEvent("message", { data: structuredClone(data) }));
      });
    }
    terminate() {
      this.frame.remove();
    }
  }

  window.Worker = FrameWorker;
})();
