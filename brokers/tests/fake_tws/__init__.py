from brokers.tests.fake_tws.server import ErrorButWorking, FakeTWS, Fill, InactiveButWorking, Reject, Rest

__all__ = ["ErrorButWorking", "FakeTWS", "Fill", "InactiveButWorking", "Reject", "Rest"]
