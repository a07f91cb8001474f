/* Forks three times with fork_handlers_lib.c linked in; each child
 * allocates and exits. Exit status: 0 when every child did. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int fork_handlers_linked(void);

int main(void) {
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            free(malloc(10));
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
    }
    return fork_handlers_linked() == 3 ? 0 : 3;
}
