// A compact PatternFly table, for the tabs that show what the daemon reports.

import { h } from "./dom.js";

/** `columns`: header texts; `rows`: arrays of cells (text or nodes), with `attrs` per row. */
export function table(label, columns, rows, rowAttrs = () => ({})) {
    return h("table", { class: "pf-v5-c-table pf-m-compact pf-m-grid-md", role: "grid", "aria-label": label },
             h("thead", { class: "pf-v5-c-table__thead" },
               h("tr", { class: "pf-v5-c-table__tr" },
                 columns.map(c => h("th", { class: "pf-v5-c-table__th", scope: "col" }, c)))),
             h("tbody", { class: "pf-v5-c-table__tbody" },
               rows.map((cells, i) => h("tr", { class: "pf-v5-c-table__tr", ...rowAttrs(i) },
                                        cells.map((cell, j) => h("td", { class: "pf-v5-c-table__td", "data-label": columns[j] }, cell))))));
}

export function empty(text) {
    return h("div", { class: "pf-v5-c-empty-state pf-m-sm" },
             h("div", { class: "pf-v5-c-empty-state__content" },
               h("div", { class: "pf-v5-c-empty-state__body" }, text)));
}
