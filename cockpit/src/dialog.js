// A PatternFly modal whose action runs a request: the dialog stays open with the daemon's
// refusal shown inside it, next to the fields that caused it, until the request succeeds.

import { h, alert, button } from "./dom.js";

/**
 * Opens a modal. `body` is a node (usually a form); `action(errorSlot)` returns a promise:
 * resolved, the dialog closes; rejected, the error's message is shown in the dialog.
 */
export function openDialog({ title, body, actionLabel, actionVariant = "primary", action, extra }) {
    const errorSlot = h("div", { class: "alw-dialog-error" });
    const close = () => backdrop.remove();
    const go = button(actionLabel, () => {
        go.disabled = true;
        errorSlot.replaceChildren();
        action(errorSlot)
                .then(close)
                .catch(err => {
                    errorSlot.replaceChildren(alert("danger", err.message, extra ? extra(err, close) : null));
                })
                .finally(() => { go.disabled = false });
    }, actionVariant, { "data-test": "dialog-action" });
    const form = body.tagName === "FORM" ? body : null;
    if (form)
        form.addEventListener("submit", ev => { ev.preventDefault(); go.click() });
    const backdrop = h("div", { class: "pf-v5-c-backdrop" },
                       h("div", { class: "pf-v5-l-bullseye" },
                         h("div", { class: "pf-v5-c-modal-box pf-m-sm", role: "dialog", "aria-modal": "true", "aria-label": title },
                           h("header", { class: "pf-v5-c-modal-box__header" },
                             h("h1", { class: "pf-v5-c-modal-box__title" }, title)),
                           h("div", { class: "pf-v5-c-modal-box__body" }, body, errorSlot),
                           h("footer", { class: "pf-v5-c-modal-box__footer" },
                             go, button("Cancel", close, "link")))));
    document.body.append(backdrop);
    const first = backdrop.querySelector("input");
    if (first)
        first.focus();
    return close;
}

/** A labelled text field of a PatternFly form. */
export function field(id, labelText, attrs = {}, help = null) {
    const input = h("input", { class: "alw-input", id, name: id, type: "text", ...attrs });
    const node = h("div", { class: "pf-v5-c-form__group" },
                   h("div", { class: "pf-v5-c-form__group-label" },
                     h("label", { class: "pf-v5-c-form__label", for: id },
                       h("span", { class: "pf-v5-c-form__label-text" }, labelText))),
                   h("div", { class: "pf-v5-c-form__group-control" },
                     h("span", { class: "pf-v5-c-form-control" }, input),
                     help ? h("div", { class: "pf-v5-c-form__helper-text" },
                              h("div", { class: "pf-v5-c-helper-text" },
                                h("div", { class: "pf-v5-c-helper-text__item" },
                                  h("span", { class: "pf-v5-c-helper-text__item-text" }, help)))) : null));
    return { node, input };
}
