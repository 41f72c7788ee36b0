"""Where a batch run's work happens (the setting ``executor``).

``local`` (the default) is ``DetectionService`` itself: decode threads and one model in the
job's process. ``ray`` (:mod:`workbench.executors.ray_data`) runs the decoding and the model
on a Ray cluster and keeps everything else — the job row, progress, cancel, resume and every
write — in the job's process, through the same code. Importing this package imports no Ray.
"""
