// A tiny DOM builder: the page is small enough that a framework would cost more to build
// and load than it saves.

/** h("button", {class: "pf-v5-c-button", onclick}, "Add") */
export function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
        if (value === undefined || value === null || value === false)
            continue;
        if (key.startsWith("on"))
            el.addEventListener(key.slice(2), value);
        else if (key === "class")
            el.className = value;
        else
            el.setAttribute(key, value === true ? "" : value);
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const child of children) {
        if (child === undefined || child === null || child === false)
            continue;
        if (Array.isArray(child))
            append(el, child);
        else
            el.append(child instanceof Node ? child : String(child));
    }
}

export function replace(el, ...children) {
    el.replaceChildren();
    append(el, children);
}

export function button(label, onclick, variant = "secondary", attrs = {}) {
    return h("button", { class: `pf-v5-c-button pf-m-${variant}`, type: "button", onclick, ...attrs }, label);
}

/**
 * The daemon's words as they are, with what it quotes in `backticks` (commands, entries) set
 * as code.
 */
export function words(text) {
    return String(text).split("`").map((part, i) => i % 2 ? h("code", {}, part) : part);
}

/** A PatternFly inline alert: `variant` is danger, warning, info or success. */
export function alert(variant, title, ...body) {
    return h("div", { class: `pf-v5-c-alert pf-m-inline pf-m-${variant}`, role: "alert" },
             h("p", { class: "pf-v5-c-alert__title" }, words(title)),
             body.length ? h("div", { class: "pf-v5-c-alert__description" }, ...body) : null);
}

export function label(text, color) {
    return h("span", { class: `pf-v5-c-label pf-m-${color}` },
             h("span", { class: "pf-v5-c-label__content" }, h("span", { class: "pf-v5-c-label__text" }, text)));
}

/** 1,000,001 */
export function count(n) {
    return Number(n).toLocaleString("en-US");
}

/** Durations as allowlistctl writes them: 1d 2h 3m 4s, zero units left out. */
export function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
        if (secs >= size || (unit === "s" && parts.length === 0)) {
            parts.push(`${Math.floor(secs / size)}${unit}`);
            secs %= size;
        }
    }
    return parts.join(" ");
}
