"""`make bench`: the ACK client against a local simulator, beside the official SDK. Not deployed."""
