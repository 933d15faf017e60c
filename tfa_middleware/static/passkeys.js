// Passkeys: a form marked data-passkey="get" (sign in) or "create" (add one) asks the server for
// the ceremony's options, calls navigator.credentials, and sends the credential in its "code"
// field. Without this script the form posts no credential, and the server says passkeys need it.
(function () {
  "use strict";

  function bytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(base64 + "===".slice((base64.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }

  function text(buffer) {
    if (!buffer) { return null; }
    var view = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < view.length; i += 1) { raw += String.fromCharCode(view[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function listed(credentials) {
    return (credentials || []).map(function (c) {
      return { type: c.type, id: bytes(c.id), transports: c.transports };
    });
  }

  // The server's options (py_webauthn's JSON, base64url fields) as the browser takes them.
  function publicKey(kind, options) {
    options.challenge = bytes(options.challenge);
    if (kind === "create") {
      options.user.id = bytes(options.user.id);
      options.excludeCredentials = listed(options.excludeCredentials);
    } else {
      options.allowCredentials = listed(options.allowCredentials);
    }
    return options;
  }

  // The credential as py_webauthn reads it (WebAuthn's JSON form).
  function serialise(credential) {
    var r = credential.response;
    var response = { clientDataJSON: text(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = text(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = text(r.authenticatorData);
      response.signature = text(r.signature);
      response.userHandle = text(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id,
      rawId: text(credential.rawId),
      type: credential.type,
      response: response,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults()
    });
  }

  // The page's own sentences, in its language (the span of _passkey_texts.html in each form).
  function said(form, which) {
    var texts = form.querySelector("[data-passkey-texts]");
    return (texts && texts.getAttribute("data-" + which)) || "";
  }

  function explain(form, error, kind) {
    var name = error && error.name;
    if (name === "NotAllowedError" || name === "AbortError") { return said(form, "cancelled"); }
    if (name === "InvalidStateError" && kind === "create") { return said(form, "exists"); }
    if (name === "SecurityError") { return said(form, "security"); }
    return said(form, "failed");
  }

  function start(form, kind, error) {
    var button = form.querySelector("button[type=submit]");
    var wrongPlace = (form.getAttribute("data-origins") || "").split(" ").indexOf(location.origin) < 0;
    function fail(message) {
      error.textContent = message;
      error.hidden = false;
      button.disabled = false;
      form.removeAttribute("data-sent");
      form.removeAttribute("data-busy");
      button.focus();
    }
    if (!window.PublicKeyCredential || !navigator.credentials) {
      fail(said(form, "unsupported"));
      return;
    }
    if (wrongPlace) {
      fail(said(form, "wrong-place"));
      return;
    }
    form.setAttribute("data-busy", "1");
    button.disabled = true;
    error.hidden = true;
    var body = new URLSearchParams();
    body.set("csrf_token", form.elements.csrf_token.value);
    body.set("action", kind === "create" ? "add_options" : "sign_in_options");
    fetch(form.getAttribute("data-options"), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("options " + answer.status); }
        return answer.json();
      })
      .then(function (options) {
        var asked = { publicKey: publicKey(kind, options) };
        return kind === "create" ? navigator.credentials.create(asked) : navigator.credentials.get(asked);
      })
      .then(function (credential) {
        form.elements.code.value = serialise(credential);
        form.submit();
      })
      .catch(function (problem) { fail(explain(form, problem, kind)); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-passkey]"), function (form) {
    var kind = form.getAttribute("data-passkey");
    var error = form.querySelector(".error");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!form.getAttribute("data-busy")) { start(form, kind, error); }
    });
  });
})();
