@echo off
rem Runs install.ps1 beside this file, for deployment tools that want a .cmd or .bat.
powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "%~dp0install.ps1" %*
exit /b %ERRORLEVEL%
