// gatehouse pages: sign up, log in and the profile, over API v1. The session lives in an
// HttpOnly cookie the server sets, so this script never sees a token. Text from the server is
// only ever put into the page with textContent, never parsed as HTML.
"use strict";

// http-server's default --max-picture-body; a server configured lower still refuses with 413,
// and that message is shown too.
const MAX_PICTURE_BYTES = 2 * 1024 * 1024;
const PICTURE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

// Calls the API; resolves to {status, body} with the JSON body or null. A network failure
// resolves to status 0 with a message, so every caller has one path for errors.
async function api(method, path, body, contentType) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = contentType || "application/json";
    init.body = contentType ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    return { status: 0, body: errorBody("network", "The service cannot be reached. Check your connection and try again.") };
  }
  let json = null;
  if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
    json = await response.json().catch(() => null);
  }
  return { status: response.status, body: json, retryAfter: response.headers.get("Retry-After") };
}

function errorBody(code, message) {
  return { error: { code, message } };
}

function errorOf(result) {
  const error = (result.body && result.body.error) || {};
  return { code: error.code || "unknown", message: error.message || `The service answered ${result.status}.` };
}

// A message sentence for people: the server's messages start in lower case.
function sentence(text) {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : capital + ".";
}

function setError(id, message, input) {
  document.getElementById(id).textContent = message || "";
  if (input) {
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

function clearErrors(form) {
  for (const element of form.querySelectorAll(".error")) element.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// While a request is under way its form takes no input, so nothing is sent twice.
function busy(form, on) {
  for (const control of form.querySelectorAll("button, input")) control.disabled = on;
}

// The message for an answer that is not about a field: the server's, with when to retry.
function serviceMessage(result) {
  const message = sentence(errorOf(result).message);
  return result.status === 503 || result.status === 429 ? message + retryText(result) : message;
}

function retryText(result) {
  const seconds = parseInt(result.retryAfter || "", 10);
  return seconds > 0 ? ` Try again in ${seconds} second${seconds === 1 ? "" : "s"}.` : " Try again shortly.";
}

// Logs in and sets the session cookie; resolves to the API result.
function logIn(username, password) {
  return api("POST", "/api/v1/sessions?cookie=true", { username, password });
}

function signupPage() {
  const form = document.getElementById("signup");
  // Which field each of the server's error codes is about.
  const fieldOf = {
    invalid_username: "username",
    username_taken: "username",
    invalid_password: "password",
    invalid_nickname: "nickname",
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    busy(form, true);
    const username = form.username.value;
    const password = form.password.value;
    const account = { username, password };
    if (form.nickname.value.trim() !== "") account.nickname = form.nickname.value;
    const result = await api("POST", "/api/v1/users", account);
    if (result.status === 201) {
      const session = await logIn(username, password);
      if (session.status === 200) {
        window.location.assign("/profile");
        return;
      }
      window.location.assign("/login?from=signup");
      return;
    }
    busy(form, false);
    const error = errorOf(result);
    const field = fieldOf[error.code];
    if (field) {
      setError(`${field}-error`, sentence(error.message), form[field]);
      form[field].focus();
    } else {
      setError("form-error", serviceMessage(result));
    }
  });
}

function loginPage() {
  const form = document.getElementById("login");
  const notices = {
    profile: "Log in to see your profile.",
    "signed-out": "You are logged out.",
    signup: "Your account is ready. Log in to continue.",
  };
  const from = new URLSearchParams(window.location.search).get("from");
  document.getElementById("notice").textContent = Object.hasOwn(notices, from || "") ? notices[from] : "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    busy(form, true);
    const result = await logIn(form.username.value, form.password.value);
    if (result.status === 200) {
      window.location.assign("/profile");
      return;
    }
    busy(form, false);
    let message;
    if (result.status === 401) {
      // One message for an unknown user and a wrong password, as the API gives.
      message = "Wrong username or password.";
    } else if (result.status === 429) {
      message = "Too many failed attempts." + retryText(result);
    } else {
      message = serviceMessage(result);
    }
    setError("form-error", message, null);
    form.password.value = "";
    form.password.focus();
  });
}

function profilePage() {
  const card = document.getElementById("profile");
  const picture = document.getElementById("picture");
  const placeholder = document.getElementById("no-picture");
  const caption = document.getElementById("picture-caption");
  const nicknameForm = document.getElementById("nickname-form");
  const pictureForm = document.getElementById("picture-form");
  const fileInput = document.getElementById("picture-file");
  const upload = document.getElementById("picture-upload");
  const logout = document.getElementById("logout");
  const retry = document.getElementById("retry");
  // The picture on the server, and the chosen file's preview (an object URL) until it is
  // uploaded or given up.
  let saved = null;
  let preview = null;

  const signedOut = () => window.location.replace("/login?from=profile");

  function showPicture() {
    const url = preview || saved;
    if (url) {
      picture.src = url;
      picture.alt = preview ? "Preview of your new picture" : "Your profile picture";
    } else {
      picture.removeAttribute("src");
    }
    picture.hidden = !url;
    placeholder.hidden = !!url;
    caption.textContent = preview ? "Preview: not saved yet" : saved ? "Your picture" : "No picture yet";
  }

  function dropPreview() {
    if (preview) URL.revokeObjectURL(preview);
    preview = null;
    upload.disabled = true;
  }

  function show(profile) {
    document.getElementById("username").textContent = profile.username;
    nicknameForm.nickname.value = profile.nickname;
    saved = profile.picture_url;
    showPicture();
    card.setAttribute("aria-busy", "false");
    document.getElementById("page-error").textContent = "";
    retry.hidden = true;
  }

  function pageError(result) {
    document.getElementById("page-error").textContent = serviceMessage(result);
  }

  nicknameForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(nicknameForm);
    document.getElementById("nickname-status").textContent = "";
    busy(nicknameForm, true);
    const result = await api("PATCH", "/api/v1/me", { nickname: nicknameForm.nickname.value });
    busy(nicknameForm, false);
    if (result.status === 200) {
      show(result.body);
      document.getElementById("nickname-status").textContent = "Nickname saved.";
    } else if (result.status === 401) {
      signedOut();
    } else if (errorOf(result).code === "invalid_nickname") {
      setError("nickname-error", sentence(errorOf(result).message), nicknameForm.nickname);
      nicknameForm.nickname.focus();
    } else {
      setError("nickname-error", serviceMessage(result));
    }
  });

  fileInput.addEventListener("change", () => {
    clearErrors(pictureForm);
    document.getElementById("picture-status").textContent = "";
    dropPreview();
    const file = fileInput.files[0];
    if (file && !PICTURE_TYPES.includes(file.type)) {
      setError("picture-error", "Choose a PNG, JPEG, GIF or WebP image.", fileInput);
    } else if (file && file.size > MAX_PICTURE_BYTES) {
      setError("picture-error", `That file is ${(file.size / 1048576).toFixed(1)} MiB; the limit is 2 MiB.`, fileInput);
    } else if (file) {
      preview = URL.createObjectURL(file);
      upload.disabled = false;
    }
    showPicture();
  });

  pictureForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file || !preview) return;
    clearErrors(pictureForm);
    busy(pictureForm, true);
    const result = await api("PUT", "/api/v1/me/picture", file, file.type);
    busy(pictureForm, false);
    if (result.status === 200) {
      dropPreview();
      fileInput.value = "";
      show(result.body);
      document.getElementById("picture-status").textContent = "Picture saved.";
    } else if (result.status === 401) {
      signedOut();
    } else if (result.status === 413 || result.status === 415) {
      // The file itself is refused: the preview goes, the saved picture shows again.
      dropPreview();
      showPicture();
      fileInput.value = ""; // so choosing the same file again is a change
      setError("picture-error", sentence(errorOf(result).message), fileInput);
    } else {
      setError("picture-error", serviceMessage(result));
    }
  });

  logout.addEventListener("click", async () => {
    logout.disabled = true;
    const result = await api("DELETE", "/api/v1/sessions/current");
    if (result.status === 204 || result.status === 401) {
      window.location.replace("/login?from=signed-out");
    } else {
      logout.disabled = false;
      pageError(result);
    }
  });

  async function load() {
    retry.hidden = true;
    document.getElementById("page-error").textContent = "";
    const result = await api("GET", "/api/v1/me");
    if (result.status === 200) show(result.body);
    else if (result.status === 401) signedOut();
    else {
      pageError(result);
      retry.hidden = false;
    }
  }
  retry.addEventListener("click", load);
  load();
}

const pages = { signup: signupPage, login: loginPage, profile: profilePage };
const page = pages[document.body.dataset.page];
if (page) page();
