"""The evaluation-day partitions of segment assets (the rule itself is in ``launcher.py``).

Each segment asset's materializations are keyed by the day they evaluate (UTC), not by when the run ran: the asset
page lists and plots them in evaluation order, and a backfill of past days evaluates the audience as of each day's
end. ``end_offset=1`` makes today's partition exist, so an evaluation "now" has a partition too.
"""

import dagster as dg

from segmentation_pipelines.launcher import PARTITION_FORMAT, PARTITION_START

EVALUATION_DAYS = dg.DailyPartitionsDefinition(
    start_date=PARTITION_START, fmt=PARTITION_FORMAT, timezone="UTC", end_offset=1
)
