// smsgw console: live refresh, the segment counter, balances and copy buttons.
// Plain ES2017, no dependencies; every page works without it, only less alive.
"use strict";

// The same rules as service/segments.py: GSM 03.38 basic table at one septet,
// its extension table at two, anything else makes the text UCS-2, where a character
// outside the BMP takes two UTF-16 units. Neither an escape pair nor a surrogate
// pair is ever split between two segments.
const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
);
const GSM_EXTENSION = new Set("\f^{}\\[~]|€");

function smsSegments(text) {
  const chars = Array.from(text);
  const gsm = chars.every((c) => GSM_BASIC.has(c) || GSM_EXTENSION.has(c));
  const cost = gsm
    ? (c) => (GSM_EXTENSION.has(c) ? 2 : 1)
    : (c) => (c.codePointAt(0) > 0xffff ? 2 : 1);
  const [single, multi] = gsm ? [160, 153] : [70, 67];
  const units = chars.reduce((sum, c) => sum + cost(c), 0);
  if (units <= single) return { encoding: gsm ? "GSM-7" : "UCS-2", units, segments: 1 };
  let segments = 1;
  let used = 0;
  for (const c of chars) {
    if (used + cost(c) > multi) {
      segments += 1;
      used = 0;
    }
    used += cost(c);
  }
  return { encoding: gsm ? "GSM-7" : "UCS-2", units, segments };
}
window.smsSegments = smsSegments;

function describe(text) {
  if (!text) return "";
  const r = smsSegments(text);
  const unit = r.encoding === "GSM-7" ? "septets" : "UTF-16 units";
  return `${r.encoding} · ${r.units} ${unit} · ${r.segments} segment${r.segments === 1 ? "" : "s"}`;
}

function counters() {
  for (const input of document.querySelectorAll("[data-segments]")) {
    const out = document.getElementById(input.dataset.segments);
    const update = () => {
      let text = input.value;
      if (input.hasAttribute("data-after-pipe")) {
        const bar = text.indexOf("|");
        text = bar < 0 ? "" : text.slice(bar + 1);
      }
      out.textContent = describe(text);
    };
    input.addEventListener("input", update);
    update();
  }
}

// Re-fetch a fragment of the page every few seconds while the tab is visible.
function live() {
  for (const el of document.querySelectorAll("[data-live]")) {
    const every = (Number(el.dataset.every) || 5) * 1000;
    const tick = async () => {
      if (!document.hidden) {
        try {
          const res = await fetch(el.dataset.live, { credentials: "same-origin" });
          if (res.redirected || res.status === 401) {
            window.location.reload(); // signed out: let the page go to sign-in
            return;
          }
          if (res.ok) el.innerHTML = await res.text();
        } catch (e) {
          // The gateway restarting: keep the last view and try again.
        }
      }
      window.setTimeout(tick, every);
    };
    window.setTimeout(tick, every);
  }
}

function balances() {
  for (const cell of document.querySelectorAll("[data-balance]")) {
    cell.textContent = "…";
    fetch(cell.dataset.balance, { credentials: "same-origin" })
      .then((res) => (res.ok ? res.text() : Promise.reject(res.status)))
      .then((html) => { cell.innerHTML = html; })
      .catch(() => { cell.textContent = "unavailable"; });
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (e) {
        document.execCommand("copy"); // plain http on another host has no clipboard API
      }
      button.textContent = "Copied";
      window.setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  counters();
  live();
  balances();
  copyButtons();
});
