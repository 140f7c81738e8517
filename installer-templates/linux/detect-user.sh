#!/bin/sh
# User detection for the backup client on Linux: prints the user this machine is registered to.
#
# The client runs this at install, as root. On success it prints
#     AGENT_USERNAME=<user name>
#     AGENT_USER_HOME=<home folder>
# and exits 0. When nobody suitable is logged in (nobody, or only root, an administrative or a
# service account) it prints nothing and exits 1; the client tries again later.
#
# Departments adapt this to how Linux accounts map to backup accounts (for example by adding the
# campus mail domain) and ship it as an overlay file named detect-user.sh.

# Appended as "@domain" to a bare account name; empty keeps the name as Linux has it.
USER_DOMAIN=""

# Accounts that are never a machine's owner (shell patterns, one a line).
SKIP_ACCOUNTS="root
admin
ladmin
localadmin
ansible
adm-*
admin-*
*-adm
*-admin
svc-*"

# Accounts below UID_MIN (1000 on most distributions) are system accounts.
uid_min=$(awk '$1 == "UID_MIN" { print $2 }' /etc/login.defs 2>/dev/null)
uid_min=${uid_min:-1000}

skipped() {
    set -f
    old_ifs=$IFS
    IFS='
'
    for pattern in $SKIP_ACCOUNTS; do
        # shellcheck disable=SC2254
        case "$1" in
            $pattern) IFS=$old_ifs; set +f; return 0 ;;
        esac
    done
    IFS=$old_ifs
    set +f
    return 1
}

# Candidates: users of local graphical or console sessions (systemd-logind), then anyone in `who`.
candidates() {
    if command -v loginctl >/dev/null 2>&1; then
        loginctl list-sessions --no-legend 2>/dev/null | while read -r session _; do
            loginctl show-session "$session" -p Name -p Remote -p Class 2>/dev/null |
                awk -F= '{ v[$1] = $2 } END { if (v["Remote"] == "no" && v["Class"] == "user") print v["Name"] }'
        done
    fi
    who 2>/dev/null | awk '{ print $1 }'
}

user=""
for candidate in $(candidates); do
    entry=$(getent passwd "$candidate") || continue
    uid=$(echo "$entry" | cut -d: -f3)
    if [ "$uid" -lt "$uid_min" ] || skipped "$candidate"; then
        echo "Skipping $candidate (system, administrative or service account)." >&2
        continue
    fi
    user=$candidate
    home=$(echo "$entry" | cut -d: -f6)
    break
done

if [ -z "$user" ]; then
    echo "No suitable user is logged in; try again later." >&2
    exit 1
fi

case "$user" in
    *@*) username=$user ;;
    *) username=${USER_DOMAIN:+$user@$USER_DOMAIN} ;;
esac
echo "AGENT_USERNAME=${username:-$user}"
echo "AGENT_USER_HOME=$home"
exit 0
