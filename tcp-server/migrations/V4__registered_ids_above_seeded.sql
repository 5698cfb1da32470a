-- Seeded users (`tcp-server seed`) have ids 1..N, user i at id i; registered accounts take
-- theirs from 2^40 (1,099,511,627,776) up. The two ranges never meet, so a database that has
-- seen real registrations can still be seeded with more users, and seeding never moves the
-- sequence. The sequence only ever moves forward: an id is never handed out twice, even after
-- the janitor purges a deleted account (a session token names its account by id).
SELECT setval(
    pg_get_serial_sequence('users', 'id'),
    GREATEST(
        COALESCE(pg_sequence_last_value(pg_get_serial_sequence('users', 'id')::regclass), 0),
        (SELECT COALESCE(max(id), 0) FROM users),
        1099511627775 -- the next id: 2^40
    )
);
