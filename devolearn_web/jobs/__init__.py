"""Long jobs: an upload analysed in chunks of frames, off the request, on RQ or in-process.

- store: a job's record and its blobs (input, chunks, results), on Redis or in a folder.
- work: the three steps (prepare, one chunk, assemble), pure functions of a store.
- settings: the values the steps need, read from the environment (workers have no Flask app).
- local: the in-process engine (a thread pool), for one machine without Redis.
- queue: the RQ engine and the functions its workers run.
Nothing here imports Flask: views/jobs.py is the web side.
"""
