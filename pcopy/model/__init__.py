"""Value objects that flow through the pipeline: Entry → Task → Result → Report.

They are NamedTuples (or plain classes) rather than dataclasses: tens of
thousands of them cross process boundaries per second, and tuples are the
cheapest immutable objects to build and pickle.
"""
