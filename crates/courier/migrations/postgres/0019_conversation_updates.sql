-- Every send updates its conversation's row (last message, last position). An index on
-- last_message_id (no query ever used it: the conversation list sorts by an expression over
-- it, per member) made each of those updates non-HOT: a new index entry per message and a
-- dead row version that stays in the heap until autovacuum, up to a minute later. A busy
-- conversations table then bloated to thousands of dead versions per live row, and every
-- statement that scanned it paid for them. Without the index, and with room left on each page
-- (fillfactor), the update is a HOT update: the old version is pruned in place on the next
-- visit of its page, and no index changes at all.
DROP INDEX conversations_by_last_message;
ALTER TABLE conversations SET (fillfactor = 50);
