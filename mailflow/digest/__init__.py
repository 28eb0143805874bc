"""The daily digest for management: how support did yesterday, and where to act.

Split the way the rest of mailflow is: :mod:`.records` and :mod:`.metrics` are pure
(frozen data in, figures out, no clock and no I/O), :mod:`.queries` is the aggregate
SQL that feeds them without loading every ticket, :mod:`.stored` keeps the figures of
closed days so that a digest scans one day, :mod:`.report` assembles the figures
into what the templates show, :mod:`.schedule` says when a digest is due (pure), and
:mod:`.send` queues it through the one writer so it goes out exactly once a day.
"""
