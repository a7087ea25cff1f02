"""Local sandbox: the app against built-in emulators of Dataverse, Enreach, Entra ID and storage."""
