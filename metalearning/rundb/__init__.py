"""The run database: Sacred records in the embedded file store or in MongoDB, and queries over them.

Modules (import the one you need; this package imports nothing heavy on its own):

- ``target``: which MongoDB (explicit URL > ``$METALEARNING_MONGO_URL`` > params.yaml
  ``run_db.mongo_url``), credential redaction.
- ``observers``: the fault-tolerant MongoDB mirror that ``metalearning.runs.recorded_run`` adds
  next to the file store.
- ``sync``: upload local runs that MongoDB missed, idempotently.
- ``store``: ``RunStore`` over the file store (``FileRunStore``) or MongoDB (``MongoRunStore``).
- ``query``: flat rows, ``--where`` filters, sorting and columns, the same on both stores.
- ``frame``: the pandas API (``runs_frame``).
- ``render`` / ``cli``: the ``metalearning runs ls|show|compare|export|sync`` commands.
"""
