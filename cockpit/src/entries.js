// The entries: a filter box (the daemon filters, so a long list never crosses whole), the
// table, sorted by a click on a column's header, with a list column when there are several
// lists and an expiry column when an entry is timed, Add and Edit in a dialog, Delete with
// a confirmation.

import { h, replace, alert, button, label, count } from "./dom.js";
import { ctl } from "./ctl.js";
import { openDialog, field } from "./dialog.js";

/** Entries shown at most; the filter narrows the rest down. */
const SHOWN = 500;
const IP = /^[0-9.]+$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$/;

export function entriesTab(app) {
    const filter = h("input", {
        class: "alw-input", type: "search", placeholder: "Filter by address or comment",
        "aria-label": "Filter entries", "data-test": "filter",
    });
    const summary = h("span", { class: "alw-meta", "data-test": "entries-summary" });
    const body = h("div");
    let timer = null;
    let shown = [];
    /** The column sorted by and its direction (1 ascending, -1 descending); null: file order. */
    let sort = null;
    const render = () => replace(body, table(app, shown, sort, column => {
        sort = sort && sort.column === column ? { column, dir: -sort.dir } : { column, dir: column === "Hits" || column === "Last hit" ? -1 : 1 };
        render();
    }));
    filter.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(load, 250);
    });
    const root = h("section", { "data-test": "entries" },
                   h("div", { class: "pf-v5-c-toolbar" },
                     h("div", { class: "pf-v5-c-toolbar__content" },
                       h("div", { class: "pf-v5-c-toolbar__content-section" },
                         h("div", { class: "pf-v5-c-toolbar__item" }, h("span", { class: "pf-v5-c-form-control" }, filter)),
                         h("div", { class: "pf-v5-c-toolbar__item" },
                           button("Add entry", () => addDialog(app), "primary", { "data-test": "add" })),
                         h("div", { class: "pf-v5-c-toolbar__item" }, summary)))),
                   body);

    function load() {
        const text = filter.value.trim();
        const args = ["list", "--limit", String(SHOWN)];
        if (text)
            args.push(IP.test(text) ? "--contains" : "--comment", text);
        return ctl(args).then(list => {
            summary.textContent = text
                ? `${count(list.matched)} of ${count(list.total)} entries match` + (list.matched > list.entries.length ? `, the first ${list.entries.length} shown` : "")
                : `${count(list.total)} entries` + (list.total > list.entries.length ? `, the first ${list.entries.length} shown: filter to find others` : "");
            shown = list.entries;
            render();
        }).catch(err => replace(body, alert("danger", err.message)));
    }
    return { title: "Entries", node: root, load };
}

/** What each sortable column compares. */
const SORT_KEYS = {
    Network: e => networkKey(e.cidr),
    List: e => e.list,
    Comment: e => e.comment.toLowerCase(),
    Hits: e => e.hits,
    "Last hit": e => e.last_hit || "",
    "Written at": e => e.origin.replace(/\d+$/, n => n.padStart(10, "0")),
    Expires: e => e.expires || "",
};

/** IPv4 before IPv6, then by address and prefix, as `list` orders networks. */
function networkKey(cidr) {
    const [addr, len] = cidr.split("/");
    if (addr.includes(".") && !addr.includes(":"))
        return "4" + addr.split(".").map(n => n.padStart(3, "0")).join(".") + "/" + len.padStart(3, "0");
    const [head, tail = ""] = addr.split("::");
    const groups = s => (s ? s.split(":") : []);
    const missing = 8 - groups(head).length - groups(tail).length;
    const full = [...groups(head), ...Array(addr.includes("::") ? missing : 0).fill("0"), ...groups(tail)];
    return "6" + full.map(g => g.padStart(4, "0")).join(":") + "/" + len.padStart(3, "0");
}

function sorted(entries, sort) {
    if (!sort)
        return entries;
    const key = SORT_KEYS[sort.column];
    return entries.slice().sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });
}

function header(column, sort, onSort) {
    if (!column || !SORT_KEYS[column])
        return h("th", { class: "pf-v5-c-table__th", scope: "col" }, column);
    const current = sort && sort.column === column;
    return h("th", {
        class: "pf-v5-c-table__th pf-v5-c-table__sort" + (current ? " pf-m-selected" : ""),
        scope: "col",
        "aria-sort": current ? (sort.dir > 0 ? "ascending" : "descending") : "none",
    },
             h("button", { class: "pf-v5-c-table__button", type: "button", "data-sort": column, onclick: () => onSort(column) },
               h("div", { class: "pf-v5-c-table__button-content" },
                 h("span", { class: "pf-v5-c-table__text" }, column),
                 h("span", { class: "pf-v5-c-table__sort-indicator" }, current ? (sort.dir > 0 ? "▲" : "▼") : "↕"))));
}

function table(app, entries, sort, onSort) {
    if (!entries.length)
        return h("div", { class: "pf-v5-c-empty-state pf-m-sm" },
                 h("div", { class: "pf-v5-c-empty-state__content" },
                   h("div", { class: "pf-v5-c-empty-state__body" }, "No entries.")));
    const lists = app.status && app.status.lists.length > 1 || entries.some(e => e.list && e.list !== "default");
    const timed = entries.some(e => e.expires);
    const columns = ["Network", lists && "List", "Comment", "Hits", "Last hit", "Written at", timed && "Expires", ""].filter(c => c !== false);
    return h("table", { class: "pf-v5-c-table pf-m-compact pf-m-grid-md", role: "grid", "aria-label": "Entries", "data-test": "entries-table" },
             h("thead", { class: "pf-v5-c-table__thead" },
               h("tr", { class: "pf-v5-c-table__tr" },
                 columns.map(c => header(c, sort, onSort)))),
             h("tbody", { class: "pf-v5-c-table__tbody" },
               sorted(entries, sort).map(e => row(app, e, lists, timed))));
}

function row(app, e, lists, timed) {
    const errorCell = h("td", { class: "pf-v5-c-table__td alw-row-error", colspan: "8" });
    const errorRow = h("tr", { class: "pf-v5-c-table__tr", hidden: true }, errorCell);
    const td = (labelText, ...content) => h("td", { class: "pf-v5-c-table__td", "data-label": labelText }, ...content);
    // An entry of a list file is edited in that file, as `allowlistctl edit` says.
    const readOnly = e.in_list_file;
    const listArgs = e.list && e.list !== "default" ? ["--list", e.list] : [];
    const actions = readOnly
        ? label("in a list file: edit it there", "blue")
        : [button("Edit", () => editDialog(app, e, listArgs), "secondary", { "data-test": "edit" }), " ",
            button("Delete", () => deleteDialog(app, e, listArgs), "danger", { "data-test": "delete" })];
    return [
        h("tr", { class: "pf-v5-c-table__tr", "data-cidr": e.cidr },
          td("Network", h("code", {}, e.cidr)),
          lists ? td("List", e.list) : null,
          td("Comment", e.comment),
          td("Hits", count(e.hits)),
          td("Last hit", e.last_hit || "never"),
          td("Written at", h("small", {}, e.origin)),
          timed ? td("Expires", e.expires || "") : null,
          h("td", { class: "pf-v5-c-table__td alw-actions" }, actions)),
        errorRow,
    ];
}

function listChoice(app) {
    const names = (app.status ? app.status.lists : []).map(l => l.name);
    if (names.length <= 1)
        return null;
    const select = h("select", { class: "alw-input", id: "entry-list", name: "list" },
                     names.map(n => h("option", { value: n }, n)));
    return {
        select,
        node: h("div", { class: "pf-v5-c-form__group" },
                h("div", { class: "pf-v5-c-form__group-label" },
                  h("label", { class: "pf-v5-c-form__label", for: "entry-list" },
                    h("span", { class: "pf-v5-c-form__label-text" }, "List"))),
                h("div", { class: "pf-v5-c-form__group-control" }, h("span", { class: "pf-v5-c-form-control" }, select))),
    };
}

function addDialog(app) {
    const cidr = field("entry-cidr", "Network or address", { placeholder: "198.18.1.0/24 or 2001:db8::/48", required: true },
                       "A single address becomes /32 or /128.");
    const comment = field("entry-comment", "Comment", { maxlength: "256", placeholder: "what it is for, e.g. office VPN" });
    const list = listChoice(app);
    openDialog({
        title: "Add entry",
        body: h("form", { class: "pf-v5-c-form", novalidate: true }, cidr.node, list && list.node, comment.node),
        actionLabel: "Add",
        action: () => app.change(["add", cidr.input.value.trim(), "--comment", comment.input.value,
            ...(list ? ["--list", list.select.value] : [])]),
    });
}

function editDialog(app, e, listArgs) {
    const cidr = field("entry-cidr", "Network or address", { value: e.cidr, required: true });
    const comment = field("entry-comment", "Comment", { value: e.comment, maxlength: "256" });
    openDialog({
        title: `Edit ${e.cidr}`,
        body: h("form", { class: "pf-v5-c-form", novalidate: true }, cidr.node, comment.node),
        actionLabel: "Save",
        action: () => {
            const args = ["edit", e.cidr, ...listArgs, "--comment", comment.input.value];
            const next = cidr.input.value.trim();
            if (next !== e.cidr)
                args.push("--cidr", next);
            return app.change(args);
        },
    });
}

function deleteDialog(app, e, listArgs) {
    openDialog({
        title: `Delete ${e.cidr}?`,
        body: h("div", {},
                h("p", {}, `New connections from ${e.cidr}`, e.comment ? ` (${e.comment})` : "",
                  " to the protected ports will be blocked unless another entry covers them. ",
                  "Established connections are kept."),
                h("p", { class: "alw-meta" }, `Written at ${e.origin}; it had ${e.hits} hits.`)),
        actionLabel: "Delete",
        actionVariant: "danger",
        action: () => app.change(["remove", e.cidr, ...listArgs]),
    });
}
