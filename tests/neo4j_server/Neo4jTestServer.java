/*
 * A real Neo4j 5 Community server for kgllm's tests, without Docker: the embedded database
 * management service with its Bolt connector on 127.0.0.1.
 *
 * Usage (jars from `make`, i.e. `mvn dependency:copy-dependencies` into target/lib):
 *
 *   java -Xmx1g --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/java.io=ALL-UNNAMED \
 *        --add-opens java.base/sun.nio.ch=ALL-UNNAMED -cp 'target/classes:target/lib/*' Neo4jTestServer \
 *        --home DIR [--port 0] [--auth on|off] [--password PW] [--pagecache 256m] [--watch-stdin]
 *
 * (or `-cp 'target/lib/*' Neo4jTestServer.java` to run the source file directly).
 *
 * Prints exactly one line "NEO4J_READY bolt://127.0.0.1:PORT" on stdout once Bolt accepts connections
 * (port 0 picks a free port, reported here), then serves until SIGTERM/SIGINT, or until stdin closes
 * with --watch-stdin (so a test run that dies never leaves a JVM behind). Shutdown is clean: the
 * store is closed by a shutdown hook. With --auth on, the user "neo4j" gets the given password.
 */

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

public final class Neo4jTestServer {

    private Neo4jTestServer() {
    }

    private static void usage(String problem) {
        System.err.println("Neo4jTestServer: " + problem);
        System.err.println("usage: Neo4jTestServer --home DIR [--port N] [--auth on|off] [--password PW] "
                + "[--pagecache 256m] [--watch-stdin]");
        System.exit(2);
    }

    /** "256m", "1g", "512k" or plain bytes. */
    private static long parseBytes(String text) {
        String t = text.trim().toLowerCase();
        long unit = 1;
        char last = t.charAt(t.length() - 1);
        if (last == 'k' || last == 'm' || last == 'g') {
            unit = last == 'k' ? ByteUnit.kibiBytes(1) : last == 'm' ? ByteUnit.mebiBytes(1) : ByteUnit.gibiBytes(1);
            t = t.substring(0, t.length() - 1);
        }
        return Long.parseLong(t) * unit;
    }

    public static void main(String[] args) throws Exception {
        Path home = null;
        int port = 0;
        boolean auth = false;
        String password = null;
        long pagecache = ByteUnit.mebiBytes(256);
        boolean watchStdin = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            boolean hasValue = i + 1 < args.length;
            switch (a) {
                case "--home" -> { if (!hasValue) usage("--home needs a value"); home = Path.of(args[++i]); }
                case "--port" -> { if (!hasValue) usage("--port needs a value"); port = Integer.parseInt(args[++i]); }
                case "--auth" -> {
                    if (!hasValue) usage("--auth needs on|off");
                    String v = args[++i];
                    if (!v.equals("on") && !v.equals("off")) usage("--auth must be on or off, got " + v);
                    auth = v.equals("on");
                }
                case "--password" -> { if (!hasValue) usage("--password needs a value"); password = args[++i]; }
                case "--pagecache" -> { if (!hasValue) usage("--pagecache needs a value"); pagecache = parseBytes(args[++i]); }
                case "--watch-stdin" -> watchStdin = true;
                default -> usage("unknown argument " + a);
            }
        }
        if (home == null) usage("--home is required");
        if (auth && (password == null || password.length() < 8)) {
            usage("--auth on needs --password of at least 8 characters (Neo4j's minimum)");
        }

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pagecache)
                // Tests create and drop a lot; keep little transaction log on the shared disk.
                .setConfig(GraphDatabaseSettings.keep_logical_logs, "keep_none")
                .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(64))
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                dbms.shutdown();
            } finally {
                stopped.countDown();
            }
        }, "neo4j-test-server-shutdown"));

        if (auth) {
            // Embedded transactions bypass authentication: set the initial password directly.
            GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
            system.executeTransactionally("ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        }

        GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        var address = db.getDependencyResolver().resolveDependency(ConnectorPortRegister.class)
                .getLocalAddress(ConnectorType.BOLT);
        System.out.println("NEO4J_READY bolt://127.0.0.1:" + address.getPort());
        System.out.flush();

        if (watchStdin) {
            Thread watcher = new Thread(() -> {
                try (InputStream in = System.in) {
                    while (in.read() != -1) {
                        // Ignore input; only its end matters.
                    }
                } catch (IOException ignored) {
                    // A broken pipe means the parent is gone, same as EOF.
                }
                System.exit(0); // runs the shutdown hook
            }, "neo4j-test-server-stdin");
            watcher.setDaemon(true);
            watcher.start();
        }
        stopped.await();
    }
}
