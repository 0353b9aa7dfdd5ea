// The lamp's own page: the lamp as drawn from its pins, its status in words, and (for its owner)
// its looks, pairing and password. Everything comes from /api/lamps/<id>/… (device/owner_page.py);
// the server checks every value, this page only shows what it says.
"use strict";

const lampId = decodeURIComponent(location.pathname.split("/")[2] || "");
const api = `/api/lamps/${encodeURIComponent(lampId)}/`;
const $ = (id) => document.getElementById(id);
let state = null;
let revision = null;
let lampPress = null;

function clamp(value) {
  return Math.min(1, Math.max(0, value));
}

// As on the lamps' page (app.js): pin values are linear light; undo the lamp's gamma.
function drawn(led, gamma) {
  const perceived = led.map((value) => Math.pow(clamp(value), 1 / gamma));
  const level = Math.max(...perceived);
  const hue = level > 0 ? perceived.map((value) => value / level) : [0, 0, 0];
  return { hue: hue.map((value) => Math.round(value * 255)), level };
}

async function call(path, body) {
  const options = body === undefined
    ? { method: "GET" }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let response;
  try {
    response = await fetch(api + path, { ...options, credentials: "same-origin" });
  } catch (error) {
    return { ok: false, status: 0, data: { error: "the lamp is not answering" } };
  }
  let data = {};
  try {
    data = await response.json();
  } catch (error) {
    data = { error: `the lamp answered ${response.status}` };
  }
  return { ok: response.ok, status: response.status, data };
}

function say(id, text, bad) {
  const element = $(id);
  element.textContent = text || "";
  element.classList.toggle("bad", Boolean(bad));
}

function ago(seconds) {
  if (seconds < 90) return "just now";
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} minutes ago`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} hours ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// ---- the lamp as drawn ----------------------------------------------------------------------

function makeLamp() {
  const figure = document.createElement("figure");
  figure.className = "lamp";
  figure.dataset.id = lampId;
  figure.innerHTML =
    '<button class="shade" type="button"><span class="light"></span></button>' +
    '<div class="base"></div>' +
    '<figcaption><span class="swatch"></span><span class="name"></span>' +
    '<span class="presence"></span></figcaption>';
  const shade = figure.querySelector(".shade");
  // A simulated lamp can be touched here as on the lamps' page; a real one refuses (403).
  let held = false;
  const send = (action) => {
    lampPress = (lampPress || Promise.resolve()).then(() =>
      fetch(`${api}${action}`, { method: "POST" }).catch(() => null));
  };
  shade.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || held) return;
    event.preventDefault();
    held = true;
    figure.classList.add("pressed");
    shade.setPointerCapture(event.pointerId);
    send("press");
  });
  const release = () => {
    if (!held) return;
    held = false;
    figure.classList.remove("pressed");
    send("release");
  };
  shade.addEventListener("pointerup", release);
  shade.addEventListener("pointercancel", release);
  shade.addEventListener("lostpointercapture", release);
  shade.addEventListener("contextmenu", (event) => event.preventDefault());
  $("lamp").appendChild(figure);
  return figure;
}

const figure = makeLamp();

function drawLamp(lamp) {
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
  if (revision !== lamp.revision) {
    revision = lamp.revision;
    refresh();
  }
}

// ---- status, owner, looks -------------------------------------------------------------------

async function refresh() {
  const answer = await call("owner");
  if (!answer.ok) {
    say("connection", answer.data.error || "the lamp is not answering", true);
    return;
  }
  state = answer.data;
  render();
}

function render() {
  const lamp = state.lamp;
  document.title = `${lamp.name} · touchlamp`;
  $("connection").textContent = lamp.online
    ? "Connected: touches go out and come in."
    : "Not connected: touches made now wait on the lamp and go out when it is back.";
  $("connection").classList.toggle("bad", !lamp.online);
  if (lamp.online) {
    $("doctor").hidden = true;
  } else {
    diagnose();
  }
  const members = $("members");
  members.textContent = "";
  if (lamp.members.length === 0) {
    const item = document.createElement("li");
    item.textContent = "Not paired yet: make a code below, or join another lamp's.";
    members.appendChild(item);
  }
  for (const member of lamp.members) {
    const item = document.createElement("li");
    item.className = "member";
    item.dataset.id = member.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = member.color;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = member.name;
    const presence = document.createElement("span");
    presence.className = "presence";
    presence.textContent = member.online ? "online" : "offline";
    item.append(swatch, name, presence);
    members.appendChild(item);
  }
  const glow = lamp.last_glow;
  $("last-touch").textContent = glow
    ? `Last touch received: from ${glow.from_name}, ${ago(state.now - glow.at)}` +
      (glow.shown ? "." : " (not shown: quiet, or it came too late).")
    : "No touch received yet.";
  $("missed").textContent = lamp.missed_touches
    ? `Touches missed since you last touched the lamp: ${lamp.missed_touches}.`
    : "";
  $("quiet-state").textContent = lamp.quiet ? "Quiet now: touches stay dark." : "";
  $("quiet-now").checked = lamp.quiet_now;
  $("quiet-now").disabled = !state.signed_in;

  $("claim-form").hidden = state.claimed;
  $("login-form").hidden = !state.claimed || state.signed_in;
  $("signed-in").hidden = !state.signed_in;
  $("reset-seconds").textContent = String(state.reset_hold_seconds);
  $("looks-fields").disabled = !state.signed_in;
  $("pairing-fields").disabled = !state.signed_in;
  const signIn = "Sign in to change the lamp.";
  if (!state.signed_in) {
    say("looks-message", signIn);
  } else if ($("looks-message").textContent === signIn) {
    say("looks-message", "");
  }
  fillLooks();
}

function fillLooks() {
  const form = $("looks-form");
  for (const setting of state.settings) {
    const input = form.elements.namedItem(setting.key);
    if (!input || document.activeElement === input || input.dataset.dirty) continue;
    const field = input.closest(".field");
    if (input.type === "checkbox") {
      input.checked = Boolean(setting.value);
    } else if (input.type === "time") {
      input.value = String(setting.value).slice(0, 5);
    } else if (input.dataset.scale) {
      const shown = Number(setting.value) / Number(input.dataset.scale);
      input.value = String(Math.round(shown * 1000) / 1000);
    } else {
      input.value = setting.value === null ? "" : String(setting.value);
    }
    input.dataset.loaded = input.type === "checkbox" ? String(input.checked) : input.value;
    let source = field.querySelector(".source");
    if (!source) {
      source = document.createElement("small");
      source.className = "source";
      field.appendChild(source);
    }
    source.textContent = `from ${setting.source}`;
  }
}

async function diagnose() {
  const answer = await call("doctor");
  const doctor = $("doctor");
  if (!answer.ok || answer.data.connected) {
    doctor.hidden = true;
    return;
  }
  doctor.hidden = false;
  doctor.textContent = answer.data.findings.map((f) => `${f.text}. Fix: ${f.fix}`).join(" ");
}

// The form's values as the settings' own units; a value that is not a number goes as typed,
// so the lamp says what is wrong with it.
function changedLooks() {
  const changes = {};
  for (const input of $("looks-form").elements) {
    if (!input.name) continue;
    const now = input.type === "checkbox" ? String(input.checked) : input.value;
    if (now === input.dataset.loaded) continue;
    if (input.type === "checkbox") {
      changes[input.name] = input.checked;
    } else if (input.dataset.scale || input.inputMode === "numeric" || input.inputMode === "decimal") {
      const number = input.value.trim() === "" ? NaN : Number(input.value);
      const scale = Number(input.dataset.scale || 1);
      changes[input.name] = Number.isFinite(number) ? number * scale : input.value;
    } else {
      changes[input.name] = input.value;
    }
  }
  return changes;
}

function clearErrors() {
  for (const field of document.querySelectorAll(".field.bad")) {
    field.classList.remove("bad");
    const error = field.querySelector(".error");
    if (error) error.remove();
  }
}

$("looks-form").addEventListener("input", (event) => {
  if (event.target.name) event.target.dataset.dirty = "1";
});

$("looks-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const changes = changedLooks();
  if (Object.keys(changes).length === 0) {
    say("looks-message", "Nothing to save: change a value first.");
    return;
  }
  const answer = await call("settings", { changes });
  if (!answer.ok) {
    say("looks-message", answer.data.error, true);
    const field = document.querySelector(`.field[data-key="${answer.data.field}"]`);
    if (field) {
      field.classList.add("bad");
      const error = document.createElement("small");
      error.className = "error";
      error.textContent = answer.data.error;
      field.appendChild(error);
    }
    return;
  }
  for (const input of $("looks-form").elements) delete input.dataset.dirty;
  state.settings = answer.data.settings;
  fillLooks();
  say("looks-message", "Saved: the lamp uses it now, and keeps it.");
});

// ---- signing in -----------------------------------------------------------------------------

async function claim(password, message) {
  say("owner-message", message);
  const answer = await call("claim", { password });
  if (!answer.ok) {
    say("owner-message", answer.data.error, true);
    return;
  }
  say("owner-message", "Done: you are the lamp's owner.");
  refresh();
}

$("claim-form").addEventListener("submit", (event) => {
  event.preventDefault();
  claim($("claim-password").value, "Now hold the lamp until it glows steadily, then let go…");
});

$("reset-button").addEventListener("click", () => {
  claim(
    $("reset-password").value,
    `Now hold the lamp for ${state.reset_hold_seconds} seconds or more, then let go…`,
  );
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await call("login", { password: $("login-password").value });
  $("login-password").value = "";
  if (!answer.ok) {
    say("owner-message", answer.data.error, true);
    return;
  }
  say("owner-message", "");
  refresh();
});

$("logout").addEventListener("click", async () => {
  await call("logout", {});
  refresh();
});

$("quiet-now").addEventListener("change", async (event) => {
  const answer = await call("quiet", { on: event.target.checked });
  if (!answer.ok) say("owner-message", answer.data.error, true);
  refresh();
});

// ---- pairing --------------------------------------------------------------------------------

$("make-code").addEventListener("click", async () => {
  const answer = await call("pair/new", {});
  if (!answer.ok) {
    say("pairing-message", answer.data.error, true);
    return;
  }
  const until = answer.data.expires_at
    ? new Date(answer.data.expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : null;
  $("code").textContent = answer.data.code;
  say("pairing-message", `Enter this code on the other lamp's page${until ? ` before ${until}` : ""}.`);
});

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await call("pair/join", { code: $("join-code").value });
  if (!answer.ok) {
    say("pairing-message", answer.data.error, true);
    return;
  }
  $("join-code").value = "";
  say("pairing-message", "Joined: touches now go to the group.");
  refresh();
});

$("leave").addEventListener("click", () => {
  $("leave-confirm").hidden = false;
});
$("leave-no").addEventListener("click", () => {
  $("leave-confirm").hidden = true;
});
$("leave-yes").addEventListener("click", async () => {
  $("leave-confirm").hidden = true;
  const answer = await call("pair/leave", { confirm: true });
  say("pairing-message", answer.ok ? "Left the group." : answer.data.error, !answer.ok);
  refresh();
});

// ---- live ------------------------------------------------------------------------------------

const events = new EventSource("/api/events");
events.onmessage = (message) => {
  const lamp = JSON.parse(message.data).find((item) => item.id === lampId);
  if (lamp) drawLamp(lamp);
};
events.onerror = () => {
  say("connection", "The page lost the lamp; retrying…", true);
};
refresh();
