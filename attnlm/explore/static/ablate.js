// attnlm explore: switching heads off (head ablation). A button per head "L.H"; a click switches that head off
// (its output z becomes zeros before the output projection) or back on, and the server's /api/ablate answers
// with the model's top 5 next characters at every position with those heads off, the positions whose likeliest
// next character flipped, and the loss on the text with and without them. On its own beside app.js: it reads
// the text from #text and follows its input events itself. No style attributes (the page's CSP): classes only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const off = new Set();  // the keys "L.H" of the heads switched off, in the order they were clicked
  let asked = 0;  // the latest request; an older answer arriving late is dropped
  let typing = null;

  function node(tag, className, parent, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  }

  function say(message, isError) {
    const line = $("ablate-loss");
    line.textContent = message;
    line.classList.toggle("error", !!isError);
  }

  async function post(body) {
    const response = await fetch("/api/ablate", { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify(body) });
    let data;
    try { data = await response.json(); } catch (e) { data = { error: `the server answered ${response.status}` }; }
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  function drawStrip(a) {
    const strip = $("ablate-strip");
    strip.replaceChildren();
    const flipped = new Set(a.flipped);
    a.labels.forEach((label, i) => {
      const pos = node("div", flipped.has(i) ? "pos flipped" : "pos", strip);
      pos.dataset.index = i;
      pos.title = flipped.has(i) ? `position ${i}: the likeliest next character changed` : `position ${i}`;
      node("div", "ch", pos, label);
      for (const p of a.predictions[i]) {
        const row = node("div", p.char === a.text[i + 1] ? "pred hit" : "pred", pos);
        node("span", "", row, p.label);
        node("span", "", row, p.p.toFixed(2).replace(/^0/, ""));
      }
    });
  }

  async function update() {
    const ticket = ++asked;
    if (!off.size) {  // every head on: nothing to compare
      $("ablate-strip").replaceChildren();
      say("");
      return;
    }
    try {
      const a = await post({ text: $("text").value, off: [...off] });
      if (ticket !== asked) return;
      drawStrip(a);
      const heads = `head${a.off.length > 1 ? "s" : ""} ${a.off.join(", ")}`;
      if (a.loss === null) {
        say(`With ${heads} off: type a second character to measure a loss. ${a.flipped.length} of ` +
            `${a.text.length} guesses flipped.`);
      } else {
        const delta = a.loss - a.intact_loss;
        say(`With ${heads} off: loss ${a.loss.toFixed(3)} on this text (every head on: ${a.intact_loss.toFixed(3)}, ` +
            `${delta >= 0 ? "+" : "−"}${Math.abs(delta).toFixed(3)}); ${a.flipped.length} of ${a.text.length} ` +
            "likeliest next characters flipped (marked).");
      }
    } catch (e) {
      if (ticket !== asked) return;
      $("ablate-strip").replaceChildren();
      say(e.message, true);
    }
  }

  function toggle(button) {
    const key = button.dataset.head;
    if (off.has(key)) off.delete(key);
    else off.add(key);
    button.setAttribute("aria-pressed", String(off.has(key)));
    update();
  }

  async function start() {
    let info;
    try {
      const response = await fetch("/api/info");
      info = await response.json();
      if (!response.ok) throw new Error(info.error || `the server answered ${response.status}`);
    } catch (e) {
      say(`cannot list the heads: ${e.message}`, true);
      return;
    }
    const row = $("ablate-heads");
    for (let layer = 0; layer < info.model.n_layer; layer++) {
      for (let head = 0; head < info.model.n_head; head++) {
        const button = node("button", "", row, `${layer}.${head}`);
        button.type = "button";
        button.dataset.head = `${layer}.${head}`;
        button.title = `layer ${layer}, head ${head}: switch it off or back on`;
        button.setAttribute("aria-pressed", "false");
        button.addEventListener("click", () => toggle(button));
      }
    }
    $("text").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(update, 150);
    });
  }

  start();
})();
