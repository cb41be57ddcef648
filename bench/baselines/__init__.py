"""The status quo the service is measured against: the engine alone (the physical limit), an
OpenRLHF-style HTTP reward server, and a judge script calling a vLLM OpenAI-compatible server."""
