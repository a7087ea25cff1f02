"""Operations: provision the Dataverse schema, check a deployment (doctor), configure telemetry."""
