; Inno Setup script (built by build.ps1): per-user install (no admin rights), Start menu entry, uninstaller.
; localchat.exe is the window (no console) and the inference worker; localchat-cli.exe runs the commands in a terminal.
; Uninstalling removes the program only: chats, settings and models in the user's folders stay.
; Windows has no network sandbox for the worker in this version: the app says "monitored only" there.
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
[Setup]
AppId={{8C7F4B1E-2B7D-4C55-9E0B-6A6C1F0D5A11}
AppName=localchat
AppVersion={#AppVersion}
AppPublisher=localchat developers
DefaultDirName={localappdata}\Programs\localchat
DefaultGroupName=localchat
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=localchat-{#AppVersion}-windows-setup
Compression=lzma2/max
SolidCompression=yes
SetupIconFile=..\..\resources\icons\localchat.ico
UninstallDisplayIcon={app}\localchat.exe
WizardStyle=modern

[Files]
Source: "..\..\dist\localchat\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\localchat"; Filename: "{app}\localchat.exe"
Name: "{userdesktop}\localchat"; Filename: "{app}\localchat.exe"; Tasks: desktopicon

[Tasks]
Name: desktopicon; Description: "Create a desktop icon"; Flags: unchecked

[Run]
Filename: "{app}\localchat.exe"; Description: "Start localchat"; Flags: nowait postinstall skipifsilent

