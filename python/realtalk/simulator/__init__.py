"""A protocol-faithful local OpenAI Realtime server: the embedded default and the test bed."""
