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

// While a request is under way its form takes no input, so nothing is sent twice. Disabling the
// focused control drops keyboard focus to the page, so it goes back when the form is enabled
// (unless the answer moved it on).
const focusBeforeBusy = new WeakMap();
function busy(form, on) {
  if (on && form.contains(document.activeElement)) focusBeforeBusy.set(form, document.activeElement);
  for (const control of form.querySelectorAll("button, input")) control.disabled = on;
  const focused = focusBeforeBusy.get(form);
  if (!on && focused) {
    focusBeforeBusy.delete(form);
    if (!document.activeElement || document.activeElement === document.body) focused.focus();
  }
}

// The message for an answer that is not about a field: the server's, with when to retry.
function serviceMessage(result) {
  const message = sentence(errorOf(result).message);
  return result.status === 503 || result.status === 429 ? message + retryText(result) : message;
}

function retryText(result) {
  const seconds = parseInt(result.retryAfter || "", 10);
  if (!(seconds > 0)) return " Try again shortly.";
  if (seconds < 90) return ` Try again in ${seconds} second${seconds === 1 ? "" : "s"}.`;
  return ` Try again in ${Math.ceil(seconds / 60)} minutes.`;
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
    weak_password: "password",
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
    "signed-out-everywhere": "You are logged out on every device.",
    "account-deleted": "Your account was deleted.",
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
  const security = document.getElementById("security");
  const passwordForm = document.getElementById("password-form");
  const logoutEverywhere = document.getElementById("logout-everywhere");
  const deleteOpen = document.getElementById("delete-open");
  const deleteDialog = document.getElementById("delete-dialog");
  const deleteForm = document.getElementById("delete-form");
  // The picture on the server, and the chosen file's preview (an object URL) until it is
  // uploaded or given up.
  let saved = null;
  let preview = null;
  // The account's username, which the deletion must be confirmed with.
  let username = "";

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
    username = profile.username;
    document.getElementById("username").textContent = username;
    for (const name of document.querySelectorAll(".account-name")) name.textContent = username;
    // So that password managers file the new password under this account.
    document.getElementById("password-username").defaultValue = username;
    nicknameForm.nickname.value = profile.nickname;
    saved = profile.picture_url;
    showPicture();
    card.setAttribute("aria-busy", "false");
    security.setAttribute("aria-busy", "false");
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

  // A new password: every session of the account ends, and the answer sets this browser's new
  // one in the cookie, so the page goes on working.
  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(passwordForm);
    document.getElementById("password-status").textContent = "";
    busy(passwordForm, true);
    const result = await api("PUT", "/api/v1/me/password", {
      current_password: passwordForm.current_password.value,
      new_password: passwordForm.new_password.value,
    });
    busy(passwordForm, false);
    const error = errorOf(result);
    if (result.status === 200) {
      passwordForm.reset();
      document.getElementById("password-status").textContent =
        "Password changed. You are still logged in here; your other devices are logged out.";
    } else if (error.code === "invalid_credentials") {
      passwordForm.current_password.value = "";
      setError("current-password-error", "Wrong password.", passwordForm.current_password);
      passwordForm.current_password.focus();
    } else if (result.status === 401) {
      signedOut();
    } else if (result.status === 429) {
      passwordForm.current_password.value = "";
      setError("current-password-error", "Too many failed attempts." + retryText(result), null);
      passwordForm.current_password.focus();
    } else if (error.code === "invalid_password" || error.code === "weak_password") {
      setError("new-password-error", sentence(error.message), passwordForm.new_password);
      passwordForm.new_password.focus();
    } else {
      setError("password-form-error", serviceMessage(result));
    }
  });

  logoutEverywhere.addEventListener("click", async () => {
    setError("logout-everywhere-error", "");
    logoutEverywhere.disabled = true;
    const result = await api("DELETE", "/api/v1/me/sessions");
    if (result.status === 204) {
      window.location.replace("/login?from=signed-out-everywhere");
    } else if (result.status === 401) {
      signedOut();
    } else {
      logoutEverywhere.disabled = false;
      logoutEverywhere.focus();
      setError("logout-everywhere-error", serviceMessage(result));
    }
  });

  // Deleting the account asks, in a modal dialog, for the username typed out and the password.
  deleteOpen.addEventListener("click", () => {
    deleteForm.reset();
    clearErrors(deleteForm);
    deleteDialog.showModal();
    deleteForm.username.focus();
  });
  document.getElementById("delete-cancel").addEventListener("click", () => deleteDialog.close());
  deleteDialog.addEventListener("cancel", (event) => {
    // Escape closes the dialog, but not while the deletion is under way.
    if (deleteForm.password.disabled) event.preventDefault();
  });
  deleteDialog.addEventListener("close", () => deleteOpen.focus());

  deleteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(deleteForm);
    if (deleteForm.username.value.trim() !== username) {
      setError("delete-username-error", `Type ${username} exactly, to be sure this is the account to delete.`, deleteForm.username);
      deleteForm.username.focus();
      return;
    }
    busy(deleteForm, true);
    const result = await api("DELETE", "/api/v1/me", { password: deleteForm.password.value });
    if (result.status === 204) {
      window.location.replace("/login?from=account-deleted");
      return;
    }
    busy(deleteForm, false);
    const error = errorOf(result);
    if (error.code === "invalid_credentials") {
      deleteForm.password.value = "";
      setError("delete-password-error", "Wrong password.", deleteForm.password);
      deleteForm.password.focus();
    } else if (result.status === 401) {
      signedOut();
    } else if (result.status === 429) {
      deleteForm.password.value = "";
      setError("delete-password-error", "Too many failed attempts." + retryText(result), null);
      deleteForm.password.focus();
    } else {
      setError("delete-form-error", serviceMessage(result));
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
