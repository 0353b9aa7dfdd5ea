// Draws each lamp from its pins (GET /api/lamps, pushed over /api/events) and turns pointer
// presses into touches: a click is a tap, pressing and holding is a hold.
"use strict";

const lampsSection = document.getElementById("lamps");
const statusLine = document.getElementById("status");
const figures = new Map();

function clamp(value) {
  return Math.min(1, Math.max(0, value));
}

// Pin values are linear light (PWM duty); a screen wants perceived values, so undo the gamma
// the lamp applied. The glass shows the hue at full strength and the brightness as opacity.
function drawn(led, gamma) {
  const perceived = led.map((value) => Math.pow(clamp(value), 1 / gamma));
  const level = Math.max(...perceived);
  const hue = level > 0 ? perceived.map((value) => value / level) : [0, 0, 0];
  return { hue: hue.map((value) => Math.round(value * 255)), level };
}

// Presses and releases of one lamp go out in order, even when a release follows quickly.
const pending = new Map();

function send(id, action) {
  const previous = pending.get(id) || Promise.resolve();
  const next = previous
    .then(() => fetch(`api/lamps/${encodeURIComponent(id)}/${action}`, { method: "POST" }))
    .then((response) => {
      if (!response.ok) {
        statusLine.textContent = `${action} on ${id} failed (${response.status})`;
      }
    })
    .catch(() => {
      statusLine.textContent = "the simulator is not answering";
    });
  pending.set(id, next);
}

function makeLamp(lamp) {
  const figure = document.createElement("figure");
  figure.className = "lamp";
  figure.dataset.id = lamp.id;
  figure.innerHTML =
    '<button class="shade" type="button"><span class="light"></span></button>' +
    '<div class="base"></div>' +
    '<figcaption><span class="swatch"></span><a class="name"></a>' +
    '<span class="presence"></span></figcaption>';
  // Each lamp's name leads to its own page (status, looks, pairing).
  figure.querySelector(".name").href = `lamp/${encodeURIComponent(lamp.id)}/`;
  const shade = figure.querySelector(".shade");
  let held = false;

  function press(event) {
    if (held) return;
    held = true;
    figure.classList.add("pressed");
    if (event.pointerId !== undefined) shade.setPointerCapture(event.pointerId);
    send(lamp.id, "press");
  }

  function release() {
    if (!held) return;
    held = false;
    figure.classList.remove("pressed");
    send(lamp.id, "release");
  }

  shade.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    press(event);
  });
  shade.addEventListener("pointerup", release);
  shade.addEventListener("pointercancel", release);
  shade.addEventListener("lostpointercapture", release);
  shade.addEventListener("keydown", (event) => {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) {
      event.preventDefault();
      press(event);
    }
  });
  shade.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") release();
  });
  shade.addEventListener("contextmenu", (event) => event.preventDefault());
  lampsSection.appendChild(figure);
  figures.set(lamp.id, figure);
  return figure;
}

function render(lamps) {
  const seen = new Set();
  for (const lamp of lamps) {
    seen.add(lamp.id);
    const figure = figures.get(lamp.id) || makeLamp(lamp);
    const { hue, level } = drawn(lamp.led, lamp.gamma);
    const rgb = `rgb(${hue[0]}, ${hue[1]}, ${hue[2]})`;
    const light = figure.querySelector(".light");
    light.style.backgroundColor = rgb;
    light.style.opacity = level.toFixed(4);
    figure.style.setProperty("--glow", rgb);
    figure.style.setProperty("--level", level.toFixed(4));
    figure.style.setProperty("--own", lamp.color);
    figure.dataset.level = level.toFixed(4);
    figure.classList.toggle("offline", !lamp.online);
    figure.querySelector(".name").textContent = lamp.name;
    figure.querySelector(".presence").textContent = lamp.online ? "online" : "offline";
    figure.querySelector(".shade").setAttribute("aria-label", `Touch ${lamp.name}`);
  }
  for (const [id, figure] of figures) {
    if (!seen.has(id)) {
      figure.remove();
      figures.delete(id);
    }
  }
}

const events = new EventSource("api/events");
events.onopen = () => {
  statusLine.textContent = "";
};
events.onmessage = (message) => {
  render(JSON.parse(message.data));
};
events.onerror = () => {
  statusLine.textContent = "connection to the simulator lost; retrying…";
};
