# Loaded at interpreter start by processes launched with course_lib.offline.offline_env().
import os

if os.environ.get("COURSE_OFFLINE"):
    from course_lib.offline import block_network

    block_network()
