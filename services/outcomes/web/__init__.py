"""The clinician pages: server-rendered views of a patient's and the programme's outcomes,
signed in with OpenID Connect and reading the service's own API with the clinician's token."""
