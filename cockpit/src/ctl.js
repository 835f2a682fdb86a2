// Every request goes through `allowlistctl --json`, run by the Cockpit bridge as root where
// the user may ("superuser: try"), else as the user: the daemon then applies the same
// authorisation (SO_PEERCRED), lockout guard and audit as for any other allowlistctl.

/** A refusal or failure, in the words of allowlistctl or the daemon. */
export class CtlError extends Error {
    constructor(kind, message, exitCode) {
        super(message);
        this.kind = kind;
        this.exitCode = exitCode;
    }
}

/**
 * Runs `allowlistctl --json ARGS...` and resolves with its reply (an object with `kind`).
 * `test` exits 1 when something is blocked: that is still a reply.
 */
export function ctl(args) {
    return new Promise((resolve, reject) => {
        let out = "";
        const proc = cockpit.spawn(["allowlistctl", "--json", ...args],
                                   { superuser: "try", err: "message" });
        proc.stream(data => { out += data });
        const settle = problem => {
            let parsed = null;
            try {
                parsed = out.trim() ? JSON.parse(out) : null;
            } catch (e) {
                parsed = null;
            }
            if (parsed && parsed.error)
                reject(new CtlError(parsed.error.kind, parsed.error.message, parsed.error.exit_code));
            else if (parsed && parsed.kind)
                resolve(parsed);
            else if (problem && problem.problem === "not-found")
                reject(new CtlError("not-installed",
                                    "allowlistctl is not installed on this server (install the allowlist package)", null));
            else
                reject(new CtlError("failed", (problem && problem.message) || "allowlistctl gave no answer",
                                    problem && problem.exit_status));
        };
        proc.then(() => settle(null)).catch(problem => settle(problem));
    });
}

/**
 * The address the browser connects from, as the server sees it: cockpit-ws hands it to the
 * login session as COCKPIT_REMOTE_PEER. Asked of the user's own bridge (a superuser bridge
 * started through sudo does not keep it). null when unknown or not an IP address.
 */
export function currentIp() {
    return cockpit.spawn(["printenv", "COCKPIT_REMOTE_PEER"], { err: "ignore" })
            .then(out => {
                // An IPv4 peer of a dual-stack socket comes as ::ffff:a.b.c.d.
                const ip = out.trim().replace(/^::ffff:(?=[0-9.]+$)/i, "");
                return /^[0-9.]+$/.test(ip) || /^[0-9a-fA-F:]+$/.test(ip) && ip.includes(":") ? ip : null;
            })
            .catch(() => null);
}
