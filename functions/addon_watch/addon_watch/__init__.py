"""ack-addon-watch: tells chat when an ACK addon upgrade finishes, fails or is canceled."""

__version__ = "0.1.0"
