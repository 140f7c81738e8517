#!/bin/sh
# User detection for the backup client on macOS: prints the user this Mac is registered to.
#
# The client runs this at install, as root. On success it prints
#     AGENT_USERNAME=<user name>
#     AGENT_USER_HOME=<home folder>
# and exits 0. When nobody suitable is logged in at the console (nobody, the login window, or an
# administrative or service account) it prints nothing and exits 1; the client tries again later.
#
# Departments adapt this to how Mac accounts map to backup accounts (for example by adding the
# campus mail domain) and ship it as an overlay file named detect-user.sh.

# Appended as "@domain" to a bare account name; empty keeps the name as macOS has it.
USER_DOMAIN=""

# Local accounts that are never a device's owner (shell patterns, one a line).
SKIP_ACCOUNTS="root
admin
ladmin
localadmin
administrator
_*
adm-*
admin-*
*-adm
*-admin
svc-*"

user=$(/usr/sbin/scutil <<'SCUTIL' | /usr/bin/awk '/Name :/ && $3 != "loginwindow" { print $3; exit }'
show State:/Users/ConsoleUser
SCUTIL
)
if [ -z "$user" ]; then
    echo "No user is logged in at the console; try again later." >&2
    exit 1
fi

# Accounts below UID 500 are system accounts on macOS.
uid=$(/usr/bin/id -u "$user" 2>/dev/null || echo 0)
if [ "$uid" -lt 500 ]; then
    echo "Skipping $user (system account)." >&2
    exit 1
fi
# No globbing: the patterns are matched against the name, not against files.
set -f
old_ifs=$IFS
IFS='
'
for pattern in $SKIP_ACCOUNTS; do
    # shellcheck disable=SC2254
    case "$user" in
        $pattern)
            echo "Skipping $user (administrative or service account)." >&2
            exit 1
            ;;
    esac
done
IFS=$old_ifs
set +f

# dscl prints "NFSHomeDirectory: /Users/x", or the value on the next line when it is long.
home=$(/usr/bin/dscl . -read "/Users/$user" NFSHomeDirectory 2>/dev/null |
    /usr/bin/awk 'NR == 1 { sub(/^NFSHomeDirectory: */, ""); if ($0 != "") { print; exit } next }
                  NR == 2 { sub(/^ +/, ""); print; exit }')
[ -n "$home" ] || home="/Users/$user"

case "$user" in
    *@*) username=$user ;;
    *) username=${USER_DOMAIN:+$user@$USER_DOMAIN} ;;
esac
echo "AGENT_USERNAME=${username:-$user}"
echo "AGENT_USER_HOME=$home"
exit 0
