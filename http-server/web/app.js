// gatehouse pages: sign up, log in and the profile, over API v1. The session lives in an
// HttpOnly cookie the server sets, so this script never sees a token. Text from the server is
// only ever put into the page with textContent, never parsed as HTML.
"use strict";

const MAX_PICTURE_BYTES = 2 * 1024 * 1024; // http-server's default --max-picture-body
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

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
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
      setError("form-error", sentence(error.message) + (result.status === 503 ? retryText(result) : ""));
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
  document.getElementById("notice").textContent = notices[from] || "";
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
    const error = errorOf(result);
    let message;
    if (result.status === 401) {
      // One message for an unknown user and a wrong password, as the API gives.
      message = "Wrong username or password.";
    } else if (result.status === 429) {
      message = "Too many failed attempts." + retryText(result);
    } else {
      message = sentence(error.message);
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
  let preview = null;

  const signedOut = () => window.location.replace("/login?from=profile");

  function showPicture(url, text) {
    if (url) {
      picture.src = url;
      picture.hidden = false;
      placeholder.hidden = true;
    } else {
      picture.removeAttribute("src");
      picture.hidden = true;
      placeholder.hidden = false;
    }
    caption.textContent = text;
  }

  function show(profile) {
    document.getElementById("username").textContent = profile.username;
    nicknameForm.nickname.value = profile.nickname;
    showPicture(profile.picture_url, profile.picture_url ? "Your picture" : "No picture yet");
    card.setAttribute("aria-busy", "false");
  }

  function pageError(result) {
    document.getElementById("page-error").textContent = sentence(errorOf(result).message);
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
    } else {
      setError("nickname-error", sentence(errorOf(result).message), nicknameForm.nickname);
    }
  });

  fileInput.addEventListener("change", () => {
    clearErrors(pictureForm);
    document.getElementById("picture-status").textContent = "";
    if (preview) URL.revokeObjectURL(preview);
    preview = null;
    upload.disabled = true;
    const file = fileInput.files[0];
    if (!file) return;
    if (!PICTURE_TYPES.includes(file.type)) {
      setError("picture-error", "Choose a PNG, JPEG, GIF or WebP image.", fileInput);
      return;
    }
    if (file.size > MAX_PICTURE_BYTES) {
      setError("picture-error", `That file is ${(file.size / 1048576).toFixed(1)} MiB; the limit is 2 MiB.`, fileInput);
      return;
    }
    preview = URL.createObjectURL(file);
    showPicture(preview, "Preview: not saved yet");
    upload.disabled = false;
  });

  pictureForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file || upload.disabled) return;
    clearErrors(pictureForm);
    busy(pictureForm, true);
    const result = await api("PUT", "/api/v1/me/picture", file, file.type);
    busy(pictureForm, false);
    if (result.status === 200) {
      show(result.body);
      if (preview) URL.revokeObjectURL(preview);
      preview = null;
      fileInput.value = "";
      upload.disabled = true;
      document.getElementById("picture-status").textContent = "Picture saved.";
    } else if (result.status === 401) {
      signedOut();
    } else {
      setError("picture-error", sentence(errorOf(result).message), fileInput);
    }
  });

  document.getElementById("logout").addEventListener("click", async () => {
    const result = await api("DELETE", "/api/v1/sessions/current");
    if (result.status === 204 || result.status === 401) {
      window.location.replace("/login?from=signed-out");
    } else {
      pageError(result);
    }
  });

  api("GET", "/api/v1/me").then((result) => {
    if (result.status === 200) show(result.body);
    else if (result.status === 401) signedOut();
    else pageError(result);
  });
}

const pages = { signup: signupPage, login: loginPage, profile: profilePage };
const page = pages[document.body.dataset.page];
if (page) page();
