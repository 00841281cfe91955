// The chat page: sends the whole conversation to /v1/chat/completions (as any OpenAI client does) and,
// once a reply has been answered, shows its per-token advantages from /v1/sdpo/signal/<id>.
"use strict";
(function () {
  const log = document.getElementById("log");
  const form = document.getElementById("form");
  const input = document.getElementById("input");
  const send = document.getElementById("send");
  const status = document.getElementById("status");
  const keyInput = document.getElementById("key");
  let messages = [];  // the conversation as the API sees it
  let lastReply = null;  // {id, element} of the latest assistant reply
  let model = null;

  keyInput.value = localStorage.getItem("sdpo-api-key") || "";
  keyInput.addEventListener("change", () => localStorage.setItem("sdpo-api-key", keyInput.value));

  function headers() {
    const h = {"Content-Type": "application/json"};
    if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
    return h;
  }

  function addMessage(role, text, cls) {
    const box = document.createElement("div");
    box.className = "msg " + (cls || role);
    const who = document.createElement("div");
    who.className = "role";
    who.textContent = role;
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    box.append(who, body);
    log.append(box);
    box.scrollIntoView({block: "end"});
    return box;
  }

  function visible(token) {
    if (token === "") return "\u00b7";
    return token.replace(/\n/g, "\u21b5\n");
  }

  function showSignal(element, signal) {
    const box = document.createElement("div");
    box.className = "signal";
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = "Per-token advantages from your answer \u201c" + signal.followup.slice(0, 80) +
      "\u201d: mean |A| = " + signal.mean_abs_advantage.toFixed(3) + ", colour scale \u00b1" +
      signal.color_limit.toFixed(3);
    const tokens = document.createElement("div");
    tokens.className = "tokens";
    signal.tokens.forEach((token, i) => {
      const span = document.createElement("span");
      span.className = "t";
      span.style.background = signal.colors[i];
      span.style.color = signal.text_colors[i];
      span.dataset.advantage = signal.advantages[i];
      span.title = "A = " + signal.advantages[i].toFixed(4) + "\nlog p teacher " +
        signal.teacher_logprobs[i].toFixed(4) + ", log p student " + signal.student_logprobs[i].toFixed(4);
      span.textContent = visible(token);
      tokens.append(span);
    });
    box.append(caption, tokens);
    element.append(box);
  }

  async function fetchSignal(reply) {
    const response = await fetch("/v1/sdpo/signal/" + encodeURIComponent(reply.id), {headers: headers()});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    showSignal(reply.element, body);
  }

  async function submit() {
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send.disabled = true;
    const answered = lastReply;
    messages.push({role: "user", content: text});
    addMessage("user", text);
    const waiting = addMessage("assistant", "\u2026", "pending");  // until the reply arrives
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(), body: JSON.stringify({model: model, messages: messages}),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
      const reply = body.choices[0].message.content;
      messages.push({role: "assistant", content: reply});
      const element = addMessage("assistant", reply);
      element.dataset.completionId = body.id;
      lastReply = {id: body.id, element: element};
      if (answered) await fetchSignal(answered);
    } catch (error) {
      messages.pop();
      addMessage("error", String(error.message || error), "error");
    } finally {
      waiting.remove();
      send.disabled = false;
      input.focus();
      refreshStatus();
    }
  }

  async function refreshStatus() {
    try {
      const health = await (await fetch("/health")).json();
      model = health.model;
      document.getElementById("auth").hidden = !health.auth;
      let line = health.model + ", learn=" + health.learn + ", weights v" + health.weights_version +
        ", " + health.interactions + (health.interactions === 1 ? " interaction" : " interactions") + " logged";
      if (health.learn === "online") line += ", " + health.updates + " updates";
      status.textContent = line;
    } catch (error) {
      status.textContent = "server unreachable";
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(); }
  });
  document.getElementById("new").addEventListener("click", () => {
    messages = []; lastReply = null; log.replaceChildren(); input.focus();
  });
  refreshStatus();
  setInterval(refreshStatus, 3000);  // updates land in the background (learn=online)
})();
