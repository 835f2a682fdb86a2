// Builds the page into dist/ (not committed): index.js and index.css bundled and minified
// by esbuild, index.html and manifest.json copied. cockpit.js is not bundled: index.html
// loads the installed cockpit's own, as every Cockpit page does.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";

/**
 * PatternFly's fonts are not shipped with the page: Cockpit serves the Red Hat fonts itself
 * (cockpit-ws's static/fonts, at ../../static/fonts from the page). Their @font-face rules
 * point there; those of fonts Cockpit lacks (variable fonts, icon fonts the page does not
 * use) are dropped.
 */
const cockpitFonts = {
    name: "cockpit-fonts",
    setup(b) {
        b.onLoad({ filter: /patternfly-base\.css$/ }, args => {
            const css = readFileSync(args.path, "utf8").replace(/@font-face\s*{[^}]*}/g, rule => {
                const m = rule.match(/url\("\.\/assets\/fonts\/RedHat(?:Text|Display|Mono)\/(RedHat(?:Text|Display|Mono)-[A-Za-z]+\.woff2)"\)/);
                return m ? rule.replace(/url\("[^"]*"\)/, `url("../../static/fonts/${m[1]}")`) : "";
            });
            return { contents: css, loader: "css" };
        });
    },
};

const out = "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
await build({
    entryPoints: ["src/index.js", "src/index.css"],
    bundle: true,
    minify: true,
    outdir: out,
    target: ["es2020"],
    logLevel: "warning",
    // Cockpit serves the Red Hat fonts itself; the page's CSS points at them (../../static).
    external: ["*.woff2"],
    plugins: [cockpitFonts],
});
for (const file of ["index.html", "manifest.json"])
    copyFileSync(`src/${file}`, `${out}/${file}`);
