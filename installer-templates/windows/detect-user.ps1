<#
.SYNOPSIS
    User detection for the backup client: prints the user this computer is registered to.

.DESCRIPTION
    The client runs this at install (as SYSTEM). On success it prints

        AGENT_USERNAME=<user name>
        AGENT_USER_HOME=<profile folder>

    and exits 0. When nobody suitable is signed in at the console (nobody at all, or only an
    administrator or service account) it prints nothing and exits 1, and the client tries again
    later.

    Departments adapt this script to how their Windows accounts map to backup accounts, for
    example by adding the campus mail domain, and ship it as an overlay file named
    detect-user.ps1.
#>
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

# Appended as "@domain" to a bare account name; empty keeps the name as Windows has it.
$UserDomain = ''

# Accounts that are never a device's owner: built-in, administrative and service accounts.
$SkipPatterns = @(
    '^(administrator|admin|guest|defaultaccount|defaultuser\d*|wdagutilityaccount)$',
    '^(adm|admin|svc|sa)[-_.]',
    '[-_.](adm|admin|svc)$',
    '\$$'
)

$console = (Get-CimInstance -ClassName Win32_ComputerSystem).UserName
if (-not $console) {
    [Console]::Error.WriteLine('No user is signed in at the console; try again later.')
    exit 1
}

# DOMAIN\name or AzureAD\name
$account = $console.Split('\')[-1]
foreach ($pattern in $SkipPatterns) {
    if ($account -match $pattern) {
        [Console]::Error.WriteLine("Skipping $console (administrative or service account).")
        exit 1
    }
}

try {
    $sid = ([Security.Principal.NTAccount] $console).Translate([Security.Principal.SecurityIdentifier]).Value
    $userProfile = Get-CimInstance -ClassName Win32_UserProfile -Filter "SID = '$sid'"
} catch {
    $userProfile = $null
}
if (-not $userProfile -or -not $userProfile.LocalPath) {
    [Console]::Error.WriteLine("No profile folder for $console yet; try again later.")
    exit 1
}

$username = if ($UserDomain -and $account -notmatch '@') { "$account@$UserDomain" } else { $account }
Write-Output "AGENT_USERNAME=$username"
Write-Output "AGENT_USER_HOME=$($userProfile.LocalPath)"
exit 0
