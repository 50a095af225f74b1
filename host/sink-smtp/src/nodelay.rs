//! Sets TCP_NODELAY on connections lettre opened, which it does not do
//! itself nor give access to: every TCP socket of this process whose peer
//! is one of the server's addresses gets it. Only the SMTP sink's own
//! connections to the archive have that peer; setting it twice is
//! harmless.

use std::net::SocketAddr;

/// Sets TCP_NODELAY on every socket of this process connected to one of
/// `peers`; returns how many now have it.
pub(super) fn set_for_peers(peers: &[SocketAddr]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        if peer_of(fd).is_some_and(|p| peers.contains(&p)) && set_nodelay(fd) {
            set += 1;
        }
    }
    set
}

/// Whether the socket `fd` has TCP_NODELAY set.
pub(super) fn has_nodelay(fd: libc::c_int) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of their sizes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value != 0
}

fn set_nodelay(fd: libc::c_int) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0 && has_nodelay(fd)
}

/// The peer address of a connected TCP socket.
fn peer_of(fd: libc::c_int) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes of their sizes.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let a: &libc::sockaddr_in =
                unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(&storage as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sets_nodelay_on_sockets_to_the_peer_only() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_a = std::net::TcpStream::connect(a.local_addr().unwrap()).unwrap();
        let to_b = std::net::TcpStream::connect(b.local_addr().unwrap()).unwrap();
        assert!(!has_nodelay(to_a.as_raw_fd()));
        assert!(set_for_peers(&[a.local_addr().unwrap()]) >= 1);
        assert!(has_nodelay(to_a.as_raw_fd()));
        assert!(!has_nodelay(to_b.as_raw_fd()));
    }
}
